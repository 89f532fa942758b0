"""Plain eager discriminators written the way the original implementation writes them.

The baseline of benchmarks/train_throughput.py: the period discriminator runs nn.Conv2d with
(k, 1) kernels on (B, 1, N/p, p), the scale discriminator nn.Conv1d on (B, C, L), torch's default
kernels, and the original's norms: torch.nn.utils.weight_norm and spectral_norm (forward pre-hooks,
not parametrisations). They load hifigan's state renamed to those norms' keys, strictly.
"""

from __future__ import annotations

import warnings

from torch import nn
from torch.nn import functional as F
from torch.nn.utils import spectral_norm, weight_norm

from hifigan.discriminators import _run_convs  # lrelu(conv) layers, then conv_post
from hifigan.formats.common import to_legacy_norm


def _convs_then_post(convs, conv_post, x):
    """Each conv called as a module, so that its norm's forward pre-hook runs (recomputes the weight)."""
    return _run_convs(convs, conv_post, x, apply=lambda conv, y: conv(y))


def normalized(conv: nn.Module, norm: str) -> nn.Module:
    """The original's norms, torch.nn.utils' pre-hook versions (torch marks weight_norm deprecated)."""
    if norm == "spectral":
        return spectral_norm(conv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return weight_norm(conv)


class DiscriminatorP(nn.Module):
    def __init__(self, period: int, channels=(32, 128, 512, 1024)) -> None:
        super().__init__()
        self.period = period
        widths = [1, *channels]
        convs = [nn.Conv2d(a, b, (5, 1), (3, 1), padding=(2, 0)) for a, b in zip(widths, widths[1:])]
        convs.append(nn.Conv2d(widths[-1], widths[-1], (5, 1), 1, padding=(2, 0)))
        self.convs = nn.ModuleList(normalized(conv, "weight") for conv in convs)
        self.conv_post = normalized(nn.Conv2d(widths[-1], 1, (3, 1), 1, padding=(1, 0)), "weight")

    def forward(self, x):
        b, c, t = x.shape
        if t % self.period:
            x = F.pad(x, (0, self.period - t % self.period), "reflect")
        return _convs_then_post(self.convs, self.conv_post, x.view(b, c, -1, self.period))


class DiscriminatorS(nn.Module):
    def __init__(self, norm: str, channels=(128, 128, 256, 512, 1024, 1024, 1024),
                 groups=(1, 4, 16, 16, 16, 16, 1)) -> None:
        super().__init__()
        widths = [1, *channels]
        specs = zip(widths, widths[1:], (15, 41, 41, 41, 41, 41, 5), (1, 2, 2, 4, 4, 1, 1), groups)
        self.convs = nn.ModuleList(normalized(nn.Conv1d(a, b, k, s, groups=g, padding=(k - 1) // 2), norm)
                                   for a, b, k, s, g in specs)
        self.conv_post = normalized(nn.Conv1d(widths[-1], 1, 3, 1, padding=1), norm)

    def forward(self, x):
        return _convs_then_post(self.convs, self.conv_post, x)


class MultiPeriodDiscriminator(nn.Module):
    def __init__(self, periods=(2, 3, 5, 7, 11), channels=(32, 128, 512, 1024)) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(DiscriminatorP(p, channels) for p in periods)

    def forward(self, y, y_hat):
        return _real_then_generated(self.discriminators, [y] * len(self.discriminators),
                                    [y_hat] * len(self.discriminators))


class MultiScaleDiscriminator(nn.Module):
    def __init__(self, channels=(128, 128, 256, 512, 1024, 1024, 1024), groups=(1, 4, 16, 16, 16, 16, 1)) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(DiscriminatorS("spectral" if i == 0 else "weight", channels, groups)
                                            for i in range(3))
        self.meanpools = nn.ModuleList(nn.AvgPool1d(4, 2, padding=2) for _ in range(2))

    def forward(self, y, y_hat):
        ys, y_hats = [y], [y_hat]
        for pool in self.meanpools:
            ys.append(pool(ys[-1]))
            y_hats.append(pool(y_hats[-1]))
        return _real_then_generated(self.discriminators, ys, y_hats)


def _real_then_generated(discriminators, ys, y_hats):
    """The original's return value (y_d_rs, y_d_gs, fmap_rs, fmap_gs); each sub-discriminator
    runs on its real input, then on its generated one (the order spectral norm's power iteration sees)."""
    y_d_rs, y_d_gs, fmap_rs, fmap_gs = [], [], [], []
    for d, y, y_hat in zip(discriminators, ys, y_hats):
        y_d_r, fmap_r = d(y)
        y_d_g, fmap_g = d(y_hat)
        y_d_rs.append(y_d_r)
        fmap_rs.append(fmap_r)
        y_d_gs.append(y_d_g)
        fmap_gs.append(fmap_g)
    return y_d_rs, y_d_gs, fmap_rs, fmap_gs


def reference_discriminators_from(mpd: nn.Module, msd: nn.Module, *, mpd_periods, mpd_channels, msd_channels,
                                  msd_groups) -> tuple[nn.Module, nn.Module]:
    """Plain copies of hifigan's discriminators with the same weights and power-iteration state (strict load)."""
    plain_mpd = MultiPeriodDiscriminator(mpd_periods, mpd_channels)
    plain_msd = MultiScaleDiscriminator(msd_channels, msd_groups)
    plain_mpd.load_state_dict(to_legacy_norm(mpd.state_dict()))
    plain_msd.load_state_dict(to_legacy_norm(msd.state_dict()))
    return plain_mpd.to(next(mpd.parameters()).device), plain_msd.to(next(msd.parameters()).device)
