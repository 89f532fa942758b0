"""One training step written the way the original implementation's train.py writes it.

The baseline of benchmarks/train_throughput.py and the yardstick of tests/test_train.py's parity
test. It runs on private copies of a Trainer's models (the generator as hifigan builds it, its
convs in the original's channels-first layout; the discriminators from reference_discriminators.py
with the same weights) and has its own copies of the reference losses, so hifigan's losses, loss
weights, optimiser settings and the order of the spectral norm's power iterations are all checked
against it: each discriminator is called on real and on generated audio separately, with full
graphs in the discriminator and the generator step, and the feature-matching loss runs its
backward through the real audio's maps too.
"""

from __future__ import annotations

import copy
import itertools

import torch
from reference_discriminators import reference_discriminators_from
from torch.nn import functional as F


def discriminator_loss(disc_real_outputs, disc_generated_outputs) -> torch.Tensor:
    return sum(torch.mean((1 - dr) ** 2) + torch.mean(dg ** 2) for dr, dg in zip(disc_real_outputs, disc_generated_outputs))


def generator_loss(disc_outputs) -> torch.Tensor:
    return sum(torch.mean((1 - dg) ** 2) for dg in disc_outputs)


def feature_loss(fmap_r, fmap_g) -> torch.Tensor:
    """The real maps are not detached: the backward also runs through the real audio's graph."""
    return 2 * sum(torch.mean(torch.abs(rl - gl)) for dr, dg in zip(fmap_r, fmap_g) for rl, gl in zip(dr, dg))


class ReferenceStep:
    """The reference training step on private copies of a Trainer's models and optimiser settings."""

    def __init__(self, t) -> None:
        config = t.train
        self.generator = copy.deepcopy(t.generator).train_channels_last(False)  # the original's layout
        self.mpd, self.msd = reference_discriminators_from(
            t.mpd, t.msd, mpd_periods=config.mpd_periods, mpd_channels=config.mpd_channels,
            msd_channels=config.msd_channels, msd_groups=config.msd_groups)
        adam = dict(lr=config.learning_rate, betas=(config.adam_b1, config.adam_b2), weight_decay=config.weight_decay)
        self.optim_g = torch.optim.AdamW(self.generator.parameters(), **adam)
        self.optim_d = torch.optim.AdamW(itertools.chain(self.msd.parameters(), self.mpd.parameters()), **adam)
        self.scaler_g = torch.amp.GradScaler(t.device.type, enabled=config.precision == "fp16")
        self.scaler_d = torch.amp.GradScaler(t.device.type, enabled=config.precision == "fp16")
        self.autocast, self.input_mel, self.loss_mel = t._autocast, t.input_mel, t.loss_mel

    def __call__(self, batch: dict) -> tuple[float, float]:
        """One discriminator step, then one generator step; returns (D loss, G loss)."""
        y = batch["audio"].unsqueeze(1)
        x = batch["mel"] if batch["mel"] is not None else self.input_mel(y.squeeze(1))
        with self.autocast():
            y_g_hat = self.generator(x)
            self.optim_d.zero_grad()
            y_df_hat_r, y_df_hat_g, _, _ = self.mpd(y, y_g_hat.detach())
            y_ds_hat_r, y_ds_hat_g, _, _ = self.msd(y, y_g_hat.detach())
            loss_disc_all = discriminator_loss(y_ds_hat_r, y_ds_hat_g) + discriminator_loss(y_df_hat_r, y_df_hat_g)
        self._apply(self.scaler_d, self.optim_d, loss_disc_all)
        self.optim_g.zero_grad()
        loss_mel = F.l1_loss(self.loss_mel(y.squeeze(1)), self.loss_mel(y_g_hat.squeeze(1).float())) * 45
        with self.autocast():
            _, y_df_hat_g, fmap_f_r, fmap_f_g = self.mpd(y, y_g_hat)
            _, y_ds_hat_g, fmap_s_r, fmap_s_g = self.msd(y, y_g_hat)
            loss_gen_all = (generator_loss(y_ds_hat_g) + generator_loss(y_df_hat_g) + feature_loss(fmap_f_r, fmap_f_g)
                            + feature_loss(fmap_s_r, fmap_s_g) + loss_mel)
        self._apply(self.scaler_g, self.optim_g, loss_gen_all)
        return loss_disc_all.item(), loss_gen_all.item()

    @staticmethod
    def _apply(scaler, optimizer, loss) -> None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
