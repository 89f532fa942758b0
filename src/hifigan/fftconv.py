"""Convolution by short DFT blocks (overlap-save), for the wide kernels of the residual blocks.

A direct Conv1d with C channels and kernel k costs 2*C*C*k flops per output sample. Cut into
blocks of n samples, it becomes one C x C complex matrix product per frequency bin of the
block, shared by the m = n - k + 1 outputs each block yields: about 8*C*C*(n/2+1)/m flops per
sample, 3.6x fewer for k = 11 and 2.7x fewer for k = 7 with n = 32 (plus the transforms, whose
cost grows with C rather than C * C). A dilated kernel is split into its d phases (samples
t = r mod d), each an undilated convolution, so dilation costs nothing extra.

Every step is a real matrix product on channels-last data, so nothing reshuffles memory:
- the block DFT is one (2 * bins, n) matrix applied to each (n, C) block, giving [Xr, Xi];
- the complex product with the kernel's spectrum V is two real products per bin,
  [Xr, Xi] @ [Vr; -Vi] (real part) and [Xr, Xi] @ [Vi; Vr] (imaginary part), both slices of
  one [Vi; Vr; -Vi] matrix;
- the inverse DFT produces only the m valid samples of each block, straight into the output.
The kernel's spectrum is computed on each call (one small matrix product) instead of being
stored: stored, it would take 1.5 * n / k times the kernel's memory (C = 256: +13 MB a conv);
a call short enough to be one group of blocks computes it a few bins at a time.
The result equals the direct convolution to float rounding (relative error ~1e-6 in fp32).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _unit_circle(rows: int, columns: int, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of 2 pi f s / n for f < rows, s < columns, in float64, exactly 0 where they are 0:
    rounded there, they leave ~1e-17 residues whose products with small activations are denormal
    floats, which slowed the CPU's matrix products about 3x (a generator pass in DFT blocks)."""
    turns = torch.outer(torch.arange(rows), torch.arange(columns)) % block
    angle = 2 * math.pi * turns.double() / block
    cos, sin = angle.cos(), angle.sin()
    cos[4 * turns % (2 * block) == block] = 0.0  # a quarter or three quarters of a turn
    sin[2 * turns % block == 0] = 0.0  # no turn or half a turn
    return cos, sin


def _dft_matrices(block: int, valid: int, kernel_size: int) -> tuple[torch.Tensor, ...]:
    """The real matrices of the block transforms, float64 (bins = n // 2 + 1):

    signal (2 * bins, n): rows (f, part) give [Xr, Xi], X = rfft(block);
    kernel (bins * 3, k): rows (f, part) give [Vi, Vr, -Vi], V = conj(rfft(kernel, n));
    inverse real / imaginary (m, bins): the first m samples of irfft from Re Y and Im Y.
    """
    bins = block // 2 + 1
    cos, sin = _unit_circle(bins, block, block)
    signal = torch.stack([cos, -sin], 1).reshape(2 * bins, block)
    cos, sin = _unit_circle(bins, kernel_size, block)
    kernel = torch.stack([sin, cos, -sin], 1).reshape(3 * bins, kernel_size)
    scale = torch.full((bins,), 2.0 / block, dtype=torch.float64)
    scale[0] = scale[-1] = 1.0 / block  # DC and Nyquist appear once in a real signal's spectrum
    cos, sin = _unit_circle(bins, valid, block)
    return signal, kernel, cos.T * scale, -sin.T * scale


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
    bins_per_step = 4  # frequency bins per kernel-spectrum piece when a call is a single group

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, *, dilation: int, block: int) -> None:
        super().__init__()
        kernel_size = weight.shape[-1]
        if kernel_size % 2 == 0 or block <= kernel_size or block % 2:
            raise ValueError(f"FFTConv1d needs an odd kernel shorter than an even block, got k={kernel_size}, "
                             f"block={block}")
        self.kernel_size, self.dilation, self.block = kernel_size, dilation, block
        self.valid = block - kernel_size + 1  # outputs per block and phase
        self.bins = block // 2 + 1
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
        m, d = self.valid, self.dilation
        blocks = -(-length // (m * d))  # blocks per phase
        signal = x.permute(0, 2, 3, 1).reshape(batch, length, channels)  # a view when x is channels-last
        out = x.new_empty(batch, blocks, m, d, self.weight.shape[0])  # output sample t = (block * m + j) * d + r
        # A group of blocks at a time, so temporaries stay small for any length, with the blocks of
        # all phases and items in one sequence, so short phases still make full-size products.
        rows, group = batch * d * blocks, max(1, self.samples_per_group // m)
        # Several groups share one full spectrum; a single group computes it a few bins at a time,
        # so that no short call holds all of it (13 MB at C = 256) next to its small activations.
        stacked = self._kernel_spectrum(0, self.bins) if rows > group else None
        for start in range(0, rows, group):
            stop = min(start + group, rows)
            parts = [(i // d, i % d, max(start - i * blocks, 0), min(stop - i * blocks, blocks))
                     for i in range(start // blocks, (stop - 1) // blocks + 1)]
            self._convolve_blocks(signal, parts, stacked, out)
        return out.view(batch, blocks * m * d, -1)[:, :length].unsqueeze(1).permute(0, 3, 1, 2)

    def _convolve_blocks(self, signal: torch.Tensor, parts: list[tuple[int, int, int, int]], stacked: torch.Tensor | None,
                         out: torch.Tensor) -> None:
        """Blocks [first, last) of phase r of item b, for each (b, r, first, last) in parts: their
        valid outputs plus bias, written into out (B, blocks, m, d, C_out)."""
        count, channels = sum(last - first for _, _, first, last in parts), signal.shape[-1]
        spectra = signal.new_empty(count, self.signal_dft.shape[0], channels)  # (G, 2 * bins, C_in)
        row = 0
        for b, r, first, last in parts:
            windows = self._windows(signal[b], r, first, last)
            torch.bmm(self.signal_dft.expand(len(windows), -1, -1), windows, out=spectra[row:row + len(windows)])
            row += len(windows)
        del windows  # the group's padded input, no longer needed: lowers the peak of what follows
        per_bin = spectra.view(count, -1, 2 * channels).transpose(0, 1)  # (bins, G, 2C): [Xr, Xi]
        if stacked is not None:
            real = torch.bmm(per_bin, stacked[:, channels:])  # (bins, G, C_out)
            imag = torch.bmm(per_bin, stacked[:, :2 * channels])
        else:
            real = per_bin.new_empty(self.bins, count, self.weight.shape[0])
            imag = torch.empty_like(real)
            for first in range(0, self.bins, self.bins_per_step):
                last = min(first + self.bins_per_step, self.bins)
                part = self._kernel_spectrum(first, last)
                torch.bmm(per_bin[first:last], part[:, channels:], out=real[first:last])
                torch.bmm(per_bin[first:last], part[:, :2 * channels], out=imag[first:last])
        real, imag = real.transpose(0, 1), imag.transpose(0, 1)  # (G, bins, C_out)
        b, r, first, last = parts[0]
        direct = len(parts) == 1 and out.shape[3] == 1  # the target rows are contiguous: write in place
        result = out[b, first:last, :, 0] if direct else None
        result = torch.baddbmm(self.bias, self.inverse_real.expand(count, -1, -1), real, out=result)
        result.baddbmm_(self.inverse_imag.expand(count, -1, -1), imag)  # (G, m, C_out)
        if not direct:
            row = 0
            for b, r, first, last in parts:
                out[b, first:last, :, r] = result[row:row + last - first]
                row += last - first

    def _windows(self, signal: torch.Tensor, phase: int, first: int, last: int) -> torch.Tensor:
        """(L, C) -> (last - first, n, C): the input blocks [first, last) of one phase, with the
        conv's zero padding, built in a small buffer (no padded copy of the whole signal)."""
        length, d, m = signal.shape[0], self.dilation, self.valid
        samples = (last - first) * m + self.kernel_size - 1
        origin = first * m * d + phase - (self.kernel_size - 1) * d // 2  # signal index of sample 0
        inside = max(0, -origin + d - 1) // d  # samples before the signal starts are zero
        end = min(samples, max(inside, (length - origin + d - 1) // d))
        segment = signal.new_empty(samples, signal.shape[1])
        segment[:inside].zero_()
        segment[end:].zero_()
        segment[inside:end] = signal[origin + inside * d:origin + (end - 1) * d + 1:d]
        return segment.unfold(0, self.block, m).transpose(1, 2)

    def _kernel_spectrum(self, first: int, last: int) -> torch.Tensor:
        """Bins [first, last) of [Vi; Vr; -Vi] as (bins, 3 C_in, C_out) matrices, V = conj(rfft(weight, n)),
        the spectrum of a cross-correlation (what Conv1d computes). Column-major, as bmm takes it."""
        out_channels, in_channels, k = self.weight.shape
        rows = self.kernel_dft[3 * first:3 * last].expand(out_channels, -1, -1)
        spectrum = torch.bmm(rows, self.weight.transpose(1, 2))  # (C_out, 3 * bins, C_in)
        return spectrum.view(out_channels, -1, 3 * in_channels).permute(1, 2, 0)
