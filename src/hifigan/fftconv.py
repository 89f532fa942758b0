"""Convolution by short DFT blocks (overlap-save), for the wide kernels of the residual blocks.

A direct Conv1d with C channels and kernel k costs 2*C*C*k flops per output sample. Cut into
blocks of n samples, it becomes one C x C complex matrix product per frequency bin of the
block, shared by the m = n - k + 1 outputs each block yields: about 8*C*C*(n/2+1)/m flops per
sample, 3.3x fewer for k = 11 and n = 64. A dilated kernel is split into its d phases (samples
t = r mod d), each an undilated convolution, so dilation costs nothing extra.

Every step is a real matrix product on channels-last data, so nothing reshuffles memory:
- the block DFT is one (2 * bins, n) matrix applied to each (n, C) block, giving [Xr, Xi];
- the complex product with the kernel's spectrum V is two real products per bin,
  [Xr, Xi] @ [Vr; -Vi] (real part) and [Xr, Xi] @ [Vi; Vr] (imaginary part), both slices of
  one [Vi; Vr; -Vi] matrix;
- the inverse DFT produces only the m valid samples of each block, straight into the output.
The kernel's spectrum is computed on each call (one small matrix product) instead of being
stored: stored, it would take 1.5 * n / k times the kernel's memory (C = 256: +13 MB a conv).
The result equals the direct convolution to float rounding (relative error ~1e-6 in fp32).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def _angles(rows: int, columns: int, block: int) -> torch.Tensor:
    """2 pi f s / n for f < rows, s < columns, in float64."""
    return 2 * math.pi * torch.outer(torch.arange(rows, dtype=torch.float64),
                                     torch.arange(columns, dtype=torch.float64)) / block


def _dft_matrices(block: int, valid: int, kernel_size: int) -> tuple[torch.Tensor, ...]:
    """The real matrices of the block transforms, float64 (bins = n // 2 + 1):

    signal (2 * bins, n): rows (f, part) give [Xr, Xi], X = rfft(block);
    kernel (bins * 3, k): rows (f, part) give [Vi, Vr, -Vi], V = conj(rfft(kernel, n));
    inverse real / imaginary (m, bins): the first m samples of irfft from Re Y and Im Y.
    """
    bins = block // 2 + 1
    angle = _angles(bins, block, block)
    signal = torch.stack([angle.cos(), -angle.sin()], 1).reshape(2 * bins, block)
    kernel_angle = _angles(bins, kernel_size, block)
    sin = kernel_angle.sin()
    kernel = torch.stack([sin, kernel_angle.cos(), -sin], 1).reshape(3 * bins, kernel_size)
    scale = torch.full((bins,), 2.0 / block, dtype=torch.float64)
    scale[0] = scale[-1] = 1.0 / block  # DC and Nyquist appear once in a real signal's spectrum
    inverse = _angles(bins, valid, block).T
    return signal, kernel, inverse.cos() * scale, -inverse.sin() * scale


class FFTConv1d(nn.Module):
    """A stride-1 Conv1d with 'same' zero padding, computed in DFT blocks.

    Args:
        weight: (C_out, C_in, k) kernel, k odd; kept as given (a view, not a copy).
        bias: (C_out,).
        dilation: the kernel's dilation d.
        block: DFT block length n (even, > k).
    Input (B, C_in, 1, L) in any layout; output (B, C_out, 1, L) channels-last.
    """

    samples_per_group = 4096  # output samples per group of blocks transformed together

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, *, dilation: int, block: int) -> None:
        super().__init__()
        kernel_size = weight.shape[-1]
        if kernel_size % 2 == 0 or block <= kernel_size or block % 2:
            raise ValueError(f"FFTConv1d needs an odd kernel shorter than an even block, got k={kernel_size}, "
                             f"block={block}")
        self.kernel_size, self.dilation, self.block = kernel_size, dilation, block
        self.valid = block - kernel_size + 1  # outputs per block and phase
        signal, kernel, inverse_real, inverse_imag = _dft_matrices(block, self.valid, kernel_size)
        self.register_buffer("signal_dft", signal.float())
        self.register_buffer("kernel_dft", kernel.float())
        self.register_buffer("inverse_real", inverse_real.float())
        self.register_buffer("inverse_imag", inverse_imag.float())
        self.register_buffer("weight", weight.detach().float())
        self.register_buffer("bias", bias.detach().float().view(1, 1, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, 1, L) -> (B, C_out, 1, L)."""
        batch, channels, _, length = x.shape
        k, d, m = self.kernel_size, self.dilation, self.valid
        blocks = -(-length // (m * d))  # blocks per phase
        per_phase = blocks * m + k - 1  # padded input samples per phase
        pad = (k - 1) * d // 2
        time_major = x.permute(0, 2, 3, 1).reshape(batch, length, channels)
        padded = F.pad(time_major, (0, 0, pad, per_phase * d - length - pad))  # (B, per_phase * d, C)
        phases = padded.view(batch, per_phase, d, channels)
        stacked = self._kernel_spectrum()
        out = x.new_empty(batch, d, blocks, m, stacked.shape[-1])
        # (blocks, n, C) overlapping views of each phase of each item, in out's row order.
        windows = [phases[b, :, r].unfold(0, self.block, m).transpose(1, 2) for b in range(batch) for r in range(d)]
        rows, group = batch * d * blocks, max(1, self.samples_per_group // m)
        flat_out = out.view(rows, m, -1)
        # A group of blocks at a time, so the transforms' temporaries stay small for any length,
        # with phases packed together, so short phases still make full-size matrix products.
        for start in range(0, rows, group):
            stop = min(start + group, rows)
            parts = [windows[i][max(start - i * blocks, 0):stop - i * blocks]
                     for i in range(start // blocks, (stop - 1) // blocks + 1)]
            self._convolve_blocks(parts, stacked, flat_out[start:stop])
        out = out.view(batch, d, blocks * m, -1)
        if d > 1:  # sample t = q * d + r comes from phase r, position q
            out = out.transpose(1, 2).reshape(batch, blocks * m * d, -1)
        else:
            out = out.view(batch, blocks * m, -1)
        return out[:, :length].unsqueeze(1).permute(0, 3, 1, 2)

    def _convolve_blocks(self, windows: list[torch.Tensor], stacked: torch.Tensor, out: torch.Tensor) -> None:
        """windows: (G_i, n, C_in) views, sum G_i = G -> out (G, m, C_out): each block's valid
        outputs plus bias."""
        count, channels = out.shape[0], windows[0].shape[-1]
        spectra = windows[0].new_empty(count, self.signal_dft.shape[0], channels)  # (G, 2 * bins, C_in)
        start = 0
        for part in windows:
            torch.bmm(self.signal_dft.expand(len(part), -1, -1), part, out=spectra[start:start + len(part)])
            start += len(part)
        per_bin = spectra.view(count, -1, 2 * channels).transpose(0, 1)  # (bins, G, 2C): [Xr, Xi]
        real = torch.bmm(per_bin, stacked[:, channels:]).transpose(0, 1)  # (G, bins, C_out)
        imag = torch.bmm(per_bin, stacked[:, :2 * channels]).transpose(0, 1)
        torch.baddbmm(self.bias, self.inverse_real.expand(count, -1, -1), real, out=out)
        out.baddbmm_(self.inverse_imag.expand(count, -1, -1), imag)

    def _kernel_spectrum(self) -> torch.Tensor:
        """[Vi; Vr; -Vi] as (bins, 3 C_in, C_out) matrices, V = conj(rfft(weight, n)), the spectrum
        of a cross-correlation (what Conv1d computes). Column-major, as bmm takes it."""
        out_channels, in_channels, k = self.weight.shape
        rows = self.kernel_dft.expand(out_channels, -1, -1)
        spectrum = torch.bmm(rows, self.weight.transpose(1, 2))  # (C_out, 3 * bins, C_in)
        return spectrum.view(out_channels, -1, 3 * in_channels).permute(1, 2, 0)
