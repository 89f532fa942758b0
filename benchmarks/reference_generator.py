"""A plain eager HiFi-GAN generator written the way the original implementation writes it.

The baseline of benchmarks/inference.py: nn.Conv1d / nn.ConvTranspose1d on (B, C, L) tensors,
torch's default kernels, no fusion. Parameter names match the original checkpoints, so it loads
the state of a folded hifigan Generator (or the original authors' generator after
remove_weight_norm) with a strict load_state_dict.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ResBlock1(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilations) -> None:
        super().__init__()
        pad = lambda d: (kernel_size * d - d) // 2  # noqa: E731
        self.convs1 = nn.ModuleList(nn.Conv1d(channels, channels, kernel_size, 1, dilation=d, padding=pad(d))
                                    for d in dilations)
        self.convs2 = nn.ModuleList(nn.Conv1d(channels, channels, kernel_size, 1, dilation=1, padding=pad(1))
                                    for _ in dilations)

    def forward(self, x):
        for c1, c2 in zip(self.convs1, self.convs2):
            xt = c1(F.leaky_relu(x, 0.1))
            xt = c2(F.leaky_relu(xt, 0.1))
            x = xt + x
        return x


class ResBlock2(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilations) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(channels, channels, kernel_size, 1, dilation=d,
                                             padding=(kernel_size * d - d) // 2) for d in dilations)

    def forward(self, x):
        for c in self.convs:
            x = c(F.leaky_relu(x, 0.1)) + x
        return x


class ReferenceGenerator(nn.Module):
    def __init__(self, *, in_channels=80, resblock="1", upsample_rates, upsample_kernel_sizes,
                 upsample_initial_channel, resblock_kernel_sizes, resblock_dilation_sizes, **_) -> None:
        super().__init__()
        self.num_kernels, self.num_upsamples = len(resblock_kernel_sizes), len(upsample_rates)
        self.conv_pre = nn.Conv1d(in_channels, upsample_initial_channel, 7, 1, padding=3)
        block = ResBlock1 if resblock == "1" else ResBlock2
        self.ups, self.resblocks = nn.ModuleList(), nn.ModuleList()
        for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes)):
            ch = upsample_initial_channel // 2 ** (i + 1)
            self.ups.append(nn.ConvTranspose1d(2 * ch, ch, k, u, padding=(k - u) // 2))
            for kernel, dilations in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(block(ch, kernel, dilations))
        self.conv_post = nn.Conv1d(ch, 1, 7, 1, padding=3)

    def forward(self, x):
        x = self.conv_pre(x)
        for i in range(self.num_upsamples):
            x = self.ups[i](F.leaky_relu(x, 0.1))
            xs = None
            for j in range(self.num_kernels):
                out = self.resblocks[i * self.num_kernels + j](x)
                xs = out if xs is None else xs + out
            x = xs / self.num_kernels
        return torch.tanh(self.conv_post(F.leaky_relu(x)))


def reference_from(generator: nn.Module, generator_config: dict) -> ReferenceGenerator:
    """The reference generator holding a folded hifigan Generator's weights (strict load)."""
    reference = ReferenceGenerator(**generator_config)
    reference.load_state_dict(generator.state_dict(), strict=True)
    return reference.eval()
