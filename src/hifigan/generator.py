"""The HiFi-GAN generator: log-mel (B, n_mels, T) -> waveform (B, 1, T * hop).

Module and parameter names follow the original implementation (conv_pre, ups.{i},
resblocks.{i*K+j}.convs1/convs2/convs, conv_post), so its checkpoints load without renaming.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .blockconv import FULL_PRECISION, block_conv1d, dft_basis
from .layers import (channels_last_1d, compute_dtype, conv1d_channels_last, init_normal, same_padding,
                     weight_norm as apply_weight_norm)

LRELU_SLOPE = 0.1
# The last activation uses torch's default slope 0.01: the published weights were trained with it.
FINAL_LRELU_SLOPE = 0.01


def _masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Zero the padded time steps of x (B, C, L) so every conv sees the zeros it would see at an edge."""
    return x if mask is None else x * mask


def _time_mask(lengths: torch.Tensor, scale: int, size: int, dtype: torch.dtype) -> torch.Tensor:
    """(B,) frame lengths -> (B, 1, size) mask that keeps the first lengths*scale steps."""
    steps = torch.arange(size, device=lengths.device)
    return (steps[None, :] < lengths[:, None] * scale).unsqueeze(1).to(dtype)


def _conv1d(channels: int, kernel_size: int, dilation: int, weight_norm: bool) -> nn.Module:
    conv = init_normal(nn.Conv1d(channels, channels, kernel_size, 1, dilation=dilation,
                                 padding=same_padding(kernel_size, dilation)))
    return apply_weight_norm(conv) if weight_norm else conv


class _ResBlock(nn.Module):
    """Shared by both residual blocks: how a conv runs."""

    channels_last = False  # set by Generator.train_channels_last

    def runs_channels_last(self, x: torch.Tensor) -> bool:
        return self.channels_last and self.training and x.device.type == "cpu"

    def _conv(self, conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
        if not self.runs_channels_last(x):
            return conv(x)
        block = _dft_block(conv, x)
        if block:
            return block_conv1d(x, conv.weight, conv.bias, dft_basis(block, conv.kernel_size[0]),
                                padding=conv.padding[0], dilation=conv.dilation[0])
        return conv1d_channels_last(conv, x)


def _dft_block(conv: nn.Conv1d, x: torch.Tensor) -> int:
    """The DFT block length (blockconv) for a residual conv of x (B, C, L) trained in fp32 on the CPU,
    0 for oneDNN.

    Forward and backward on a 2-core AMX Xeon (batch 4, channels-last, dilation 1 / 5): k = 11 at
    256 channels and L = 256 15.0 / 17.0 -> 9.3 / 12.0 ms (n = 32), at 128 channels and L = 2048
    30.9 / 30.2 -> 14.8 / 18.7 ms (n = 64), at 64 channels 15.6 / 15.9 -> 11.8 / 15.2 ms (64); k = 7
    at 128 channels 19.9 / 19.6 -> 14.5 / 16.9 ms (32). k = 3, k = 7 at 64 channels and all 32-channel
    convs were as fast or faster in oneDNN. Blocks lose on few positions (B * L): the V1 block of
    six k = 7 convs at 256 channels took 20.8 ms in oneDNN against 31.4 in blocks at 256 positions,
    31.3 against 36.8 at 512 and 54.7 against 51.7 at 1024; k = 11 34.0 against 35.8 at 256 and 49.9
    against 41.7 at 512; n = 64 pays for k = 11 from 4096 positions (at 2048: 31.4 against 28.4 ms
    for n = 32)."""
    channels, k = conv.in_channels, conv.kernel_size[0]
    positions = x.shape[0] * x.shape[-1]
    if compute_dtype(x) not in FULL_PRECISION or k < 7 or channels < (128 if k < 11 else 64):
        return 0
    if positions < (512 if k >= 11 else 1024):
        return 0
    return 64 if k >= 11 and positions >= 4096 else 32


class ResBlock1(_ResBlock):
    """Per dilation d: x = x + conv_1(lrelu(conv_d(lrelu(x)))). Shape-preserving (B, C, L)."""

    def __init__(self, *, channels: int, kernel_size: int = 3, dilations: Sequence[int] = (1, 3, 5),
                 weight_norm: bool = True) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(_conv1d(channels, kernel_size, d, weight_norm) for d in dilations)
        self.convs2 = nn.ModuleList(_conv1d(channels, kernel_size, 1, weight_norm) for _ in dilations)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for conv1, conv2 in zip(self.convs1, self.convs2):
            residual = _masked(self._conv(conv1, F.leaky_relu(x, LRELU_SLOPE)), mask)
            residual = _masked(self._conv(conv2, F.leaky_relu(residual, LRELU_SLOPE)), mask)
            x = residual + x
        return x


class ResBlock2(_ResBlock):
    """Per dilation d: x = x + conv_d(lrelu(x)). Shape-preserving (B, C, L)."""

    def __init__(self, *, channels: int, kernel_size: int = 3, dilations: Sequence[int] = (1, 3),
                 weight_norm: bool = True) -> None:
        super().__init__()
        self.convs = nn.ModuleList(_conv1d(channels, kernel_size, d, weight_norm) for d in dilations)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for conv in self.convs:
            x = _masked(self._conv(conv, F.leaky_relu(x, LRELU_SLOPE)), mask) + x
        return x


RESBLOCKS = {"1": ResBlock1, "2": ResBlock2}


class Generator(nn.Module):
    """HiFi-GAN generator.

    Args:
        in_channels: mel bands of the input (80 for the published models).
        resblock: "1" (two convs per dilation; V1/V2) or "2" (one conv per dilation; V3).
        upsample_rates: stride of each transposed conv; their product is the hop length.
        upsample_kernel_sizes: kernel of each transposed conv (kernel - rate must be even).
        upsample_initial_channel: channels after conv_pre; halved by each upsampling stage.
        resblock_kernel_sizes: kernel of each of the K parallel residual blocks per stage.
        resblock_dilation_sizes: dilations of each of those K blocks.
        weight_norm: weight-normalise every conv (training form); fold with layers.fold_weight_norm.
    """

    def __init__(
        self,
        *,
        in_channels: int = 80,
        resblock: str = "1",
        upsample_rates: Sequence[int] = (8, 8, 2, 2),
        upsample_kernel_sizes: Sequence[int] = (16, 16, 4, 4),
        upsample_initial_channel: int = 512,
        resblock_kernel_sizes: Sequence[int] = (3, 7, 11),
        resblock_dilation_sizes: Sequence[Sequence[int]] = ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
        weight_norm: bool = True,
    ) -> None:
        super().__init__()
        norm = apply_weight_norm if weight_norm else (lambda module: module)
        self.upsample_rates = tuple(upsample_rates)
        self.num_kernels = len(resblock_kernel_sizes)
        # conv_pre keeps torch's default init, as in the reference.
        self.conv_pre = norm(nn.Conv1d(in_channels, upsample_initial_channel, 7, 1, padding=3))
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (rate, kernel) in enumerate(zip(upsample_rates, upsample_kernel_sizes)):
            channels = upsample_initial_channel // 2 ** (i + 1)
            up = nn.ConvTranspose1d(2 * channels, channels, kernel, rate, padding=(kernel - rate) // 2)
            self.ups.append(norm(init_normal(up)))
            for kernel_size, dilations in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(RESBLOCKS[resblock](
                    channels=channels, kernel_size=kernel_size, dilations=dilations, weight_norm=weight_norm))
        self.conv_post = norm(init_normal(nn.Conv1d(channels, 1, 7, 1, padding=3)))

    def train_channels_last(self, enabled: bool = True) -> Generator:
        """Run the residual blocks' convs on channels-last data while training on the CPU: forward
        and backward of V1 (bf16, batch 2 x 8192 samples) took 243-246 ms instead of 272-278 on a
        2-core AMX Xeon. Off by default, and never used in eval mode, so inference stays bit-exact."""
        for block in self.resblocks:
            block.channels_last = enabled
        return self

    @property
    def hop_length(self) -> int:
        return math.prod(self.upsample_rates)

    def forward(self, mel: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """mel (B, in_channels, T) -> audio (B, 1, T * hop_length) in [-1, 1].

        `lengths` (B,) gives each item's frames in a padded batch: the padded steps are zeroed
        after every layer, so each item's output equals its unpadded output (to float rounding).
        """
        scale = 1
        mask = None if lengths is None else _time_mask(lengths, 1, mel.shape[-1], mel.dtype)
        x = _masked(self.conv_pre(_masked(mel, mask)), mask)
        for i, (up, rate) in enumerate(zip(self.ups, self.upsample_rates)):
            scale *= rate
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            mask = None if lengths is None else _time_mask(lengths, scale, x.shape[-1], x.dtype)
            x = _masked(x, mask)
            blocks = self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]
            if blocks[0].runs_channels_last(x):
                x = channels_last_1d(x)  # the blocks' layout, so their residual adds do not mix layouts
            # Summed in order, then divided, as the reference does: keeps outputs bit-identical.
            total = blocks[0](x, mask)
            for block in blocks[1:]:
                total = total + block(x, mask)
            x = total / self.num_kernels
        x = self.conv_post(F.leaky_relu(x, FINAL_LRELU_SLOPE))
        return torch.tanh(x)
