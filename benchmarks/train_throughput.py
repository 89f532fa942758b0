"""Training throughput: mel frames per second of one full step (generator + both discriminators).

python benchmarks/train_throughput.py [--presets v1 v3] [--batch 4] [--segment 8192] [--precisions fp32 bf16]
    [--steps 3] [--threads 2]

Compares hifigan's Trainer.train_step with a plain eager step written the way the reference
implementation does it (each discriminator run separately on real and generated audio, in both
the discriminator and the generator step), same models, batch and precision. Prints one table.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import tempfile
import time

import numpy as np
import torch

from hifigan.config import TrainConfig, model_preset
from hifigan.losses import LOSS_WEIGHTS, adversarial_loss, discriminator_loss, feature_matching_loss, mel_loss
from hifigan.train.trainer import Trainer


def reference_style_step(t: Trainer, batch: dict) -> None:
    """One D step and one G step as the reference writes them (no concatenation, no accumulation)."""
    real = batch["audio"].unsqueeze(1)
    with t._autocast():
        fake = t.generator(t.input_mel(real.squeeze(1)))
        t.optim_d.zero_grad()
        loss_d = 0
        for d in (t.mpd, t.msd):
            real_out, fake_out = d(real), d(fake.detach())
            loss_d = loss_d + discriminator_loss(real_out, fake_out)
    t.scaler_d.scale(loss_d).backward()
    t.scaler_d.step(t.optim_d)
    t.scaler_d.update()
    t.optim_g.zero_grad()
    with t._autocast():
        real_out = [o for d in (t.mpd, t.msd) for o in d(real)]
        fake_out = [o for d in (t.mpd, t.msd) for o in d(fake)]
    real_mel, fake_mel = t.loss_mel(real.squeeze(1)), t.loss_mel(fake.squeeze(1).float())
    loss_g = (LOSS_WEIGHTS["adversarial"] * adversarial_loss(fake_out)
              + LOSS_WEIGHTS["feature_matching"] * feature_matching_loss(real_out, fake_out)
              + LOSS_WEIGHTS["mel"] * mel_loss(real_mel, fake_mel))
    t.scaler_g.scale(loss_g).backward()
    t.scaler_g.step(t.optim_g)
    t.scaler_g.update()


def timed(step, steps: int) -> float:
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["v1", "v3"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--segment", type=int, default=8192)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"batch {args.batch} x {args.segment} samples, {args.threads} threads, device cpu")
    print(f"{'preset':>7} {'precision':>9} {'reference-style (frames/s)':>27} {'hifigan (frames/s)':>19} {'ratio':>6}")
    for preset, precision in itertools.product(args.presets, args.precisions):
        model = model_preset(preset)
        config = TrainConfig(batch_size=args.batch, segment_size=args.segment, precision=precision, num_workers=0)
        trainer = Trainer(model, config, tempfile.mkdtemp(), [], progress=False)
        audio = torch.from_numpy((0.3 * rng.standard_normal((args.batch, args.segment))).astype(np.float32))
        batch = {"audio": audio, "mel": None, "names": []}
        frames = args.batch * args.segment // model.mel.hop_length
        reference = timed(lambda: reference_style_step(trainer, batch), args.steps)
        ours = timed(lambda: trainer.train_step([batch]), args.steps)
        print(f"{preset:>7} {precision:>9} {frames / reference:27.1f} {frames / ours:19.1f} {reference / ours:6.2f}")


if __name__ == "__main__":
    main()
