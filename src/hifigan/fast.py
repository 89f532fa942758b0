"""A fast CPU inference engine for a folded generator.

The plain generator runs each Conv1d on (B, C, L) tensors, for which oneDNN reorders every
input and output to its blocked layout on every call and reaches about half the speed of a
matrix product on this kind of CPU. This engine keeps activations channels-last as
(B, C, 1, L) and runs 2-D convolutions with (1, K) kernels, which oneDNN computes directly in
that layout (1.3-1.6x the eager generator for V1 here); activations and residual sums are
done in place on fresh conv outputs.

Memory (working set, measured with glibc's heap retention taken out by
MALLOC_MMAP_THRESHOLD_=65536, MB above the loaded model): V1 128 frames 50 vs eager 43,
693 frames 120 vs 166; V2 34 vs 29, 58 vs 62; V3 38 vs 43, 78 vs 148. What remains above eager
at 128 frames is oneDNN's primitive cache (channels-last conv primitives are larger) and the
DFT convs' per-group temporaries.

In fp32 on CPU the wide residual-block convs (k >= 7, C * k >= 700: V1's first three stages)
run as DFT-block convolutions (fftconv.py), which need 2.7-3.6x fewer flops, on inputs long
enough to repay the DFTs' per-call costs (WideConv); with them V1 runs 1.6-2.1x the reference
generator across four measured runs (README, Performance). Where the CPU's GEMM is
slow next to oneDNN's convs (AMD Zen 5: DFT blocks lost), a one-off probe turns them off.

bf16 policy (measured on real speech against fp32, see README): the convolutions of the inner
stages take bf16 inputs and weights, while conv_pre (whose input, the log-mel, loses too much
when rounded to bf16), the first and last upsampling convs and conv_post stay fp32. Rounding
everything to bf16 gave 24-31 dB SNR against fp32 on LJSpeech clips; the first upsampling conv in
fp32 raised the worst of three clips from 25.5 to 35.2 dB (V1) and from 24.5 to 32.5 dB (V2) at
no measurable cost. The last stage's convs are bf16 only where it is wide (V1: 32 channels, 16%
faster at 128 frames, mel L1 within 0.003 of fp32's): V2's 8-channel last stage gains nothing in
bf16 and sets the noise floor of quiet passages (mel L1 0.370 against fp32's 0.328). The residual
stream (the blocks' inputs, sums and means) is bf16 in stages of 64+ channels but the last, the
first from 256 (V1: 12% faster, 5% more for its first stage), and fp32 elsewhere (V2's narrow stages: mel L1 0.02 worse in
bf16). Where it is bf16, the convs run as oneDNN fused ops (leaky_relu and sums fused) when the
Vocoder asks for bf16 on CPU (see `fused`).
"""

from __future__ import annotations

import functools
import time
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from .device import cpu_bf16_supported
from .fftconv import FFTConv1d
from .generator import FINAL_LRELU_SLOPE, LRELU_SLOPE, Generator, ResBlock1, _masked, _time_mask

# Which residual-block convs can run as FFT convolutions (fftconv.py) on CPU in fp32: the DFTs'
# cost per output sample grows with C, the saved matrix work with C * C * k, so the width
# C * k decides. Measured here (V1 layers, 2 threads): faster than direct from C * k = 704
# (C = 64, k = 11) up on long inputs; slower for C = 32 and for k = 3.
FFT_MIN_KERNEL = 7
FFT_MIN_WIDTH = 700
FFT_BLOCK = 32  # as fast as 64 for these layers (within 10%), with half the temporary memory
# ... but only on calls long enough: the DFT path has per-call costs that a short input does not
# repay. Measured per conv (2 threads, B = 1, dilations 1/3/5): C = 256 k = 11 gains 1.28x at
# L = 1024 and loses at 512; C = 128 k = 7 breaks even at 4096 and gains 1.1-1.6x at 8192;
# C = 64 k = 11 loses up to 5544 (0.4-0.8x) and gains 0.95-1.33x from 16384. The direct conv's
# multiply-adds per call (B * L * C_in * C_out * k) separate the two: DFT from this many.
FFT_MIN_MACS = 450_000_000


# In bf16 the last stage's residual blocks run bf16 only from this width: measured here (AMX, 2
# threads) bf16 convs ran 3.2-7.3x fp32 at 32 channels but 0.5-1.4x at 8, where V2's last stage
# in bf16 was slower than in fp32 (19.3 vs 18.1 ms at 128 frames) and its mel L1 0.04 worse.
BF16_MIN_LAST_WIDTH = 32
# ... and a stage's residual stream (the blocks' input, sums and mean) is bf16 from these widths
# (the first stage, which all the others amplify, from a wider one), fp32 below and in the last
# stage. Measured on LJSpeech clips against fp32: in V1's 128- and 64-channel stages bf16 took 12%
# off the time at 128 frames and in its 256-channel first stage 5% more, SNR and mel L1 within
# noise of the fp32 stream's (16 clips: worst 34-36 dB); in V2's 32- and 16-channel stages it cost
# 0.02 of mel L1, and in V2's first (64-channel) stage the worst of 16 clips fell from 31.4 to 30.4 dB.
BF16_MIN_RESIDUAL_WIDTH = 64
BF16_MIN_FIRST_RESIDUAL_WIDTH = 256
FUSED_MIN_CHUNK = 8192

# Transposed convs on inputs up to this many steps (V1/V2's first upsampling of a short mel) run
# on the plain (B, C, L) layout: as fast here, and oneDNN's channels-last path holds 8 MB more
# temporaries for V1's 8 MB kernel (measured at 128 frames: +26 vs +18 MB; at 693 frames the
# channels-last path is faster, 47 vs 57 ms).
PLAIN_TRANSPOSED_MAX_LENGTH = 256


def fft_block(in_channels: int, kernel_size: int, min_width: int | None = FFT_MIN_WIDTH) -> int | None:
    """The DFT block length for a conv of this shape, or None where direct convolution is faster."""
    if min_width is None or kernel_size < FFT_MIN_KERNEL or in_channels * kernel_size < min_width:
        return None
    return FFT_BLOCK


def onednn_available() -> bool:
    """True when torch has oneDNN's fused convolution ops (CPU builds of torch >= 2.1)."""
    ops = torch.ops.mkldnn
    return torch.backends.mkldnn.is_available() and all(
        hasattr(ops, name) for name in ("_convolution_pointwise", "_reorder_convolution_weight",
                                        "_convolution_transpose_pointwise",
                                        "_reorder_convolution_transpose_weight"))


class FusedConv(nn.Module):
    """One Conv1d/ConvTranspose1d as a channels-last 2-D conv: (B, Cin, 1, L) -> (B, Cout, 1, L').

    `slope` fuses leaky_relu(output, slope); `residual` fuses output + residual.
    """

    def __init__(self, conv: nn.Conv1d | nn.ConvTranspose1d, *, dtype: torch.dtype, fused: bool) -> None:
        super().__init__()
        self.transposed = isinstance(conv, nn.ConvTranspose1d)
        self.dtype = dtype
        self.fused = fused and dtype != torch.float16
        self.padding, self.stride = [0, conv.padding[0]], [1, conv.stride[0]]
        self.dilation = [1, conv.dilation[0]]
        # A view of the generator's weight (no second copy) where it is used as it is: in fp32,
        # and when fused, which packs its own copy in `dtype` (_packed_weight). Otherwise a
        # reduced-precision copy, stored channels-last, the layout conv2d asks of it beside
        # channels-last inputs, which spares a copy of every weight on every call (3-4% of a
        # bf16 conv here).
        self.weight = conv.weight.detach()[:, :, None, :]
        if dtype != self.weight.dtype and not self.fused:
            self.weight = self.weight.to(dtype)
            if not self.transposed:
                self.weight = self.weight.contiguous(memory_format=torch.channels_last)
        self.bias = conv.bias.detach().to(dtype)
        self._packed: tuple[tuple[int, ...], torch.Tensor] | None = None

    def _packed_weight(self, x: torch.Tensor) -> torch.Tensor:
        """The weight in the layout oneDNN picks for inputs of x's shape, cached for the last shape.

        oneDNN's best layout depends on the input size; a weight packed for another size is
        reordered again on every call (measured: slower than no packing for short inputs).
        """
        shape = tuple(x.shape)
        if self._packed is None or self._packed[0] != shape:
            weight = self.weight.to(self.dtype)
            if self.transposed:
                packed = torch.ops.mkldnn._reorder_convolution_transpose_weight(
                    weight, self.padding, [0, 0], self.stride, self.dilation, 1, list(shape))
            else:
                packed = torch.ops.mkldnn._reorder_convolution_weight(
                    weight, self.padding, self.stride, self.dilation, 1, list(shape))
            self._packed = (shape, packed)
        return self._packed[1]

    def forward(self, x: torch.Tensor, slope: float | None = None,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
        if not self.fused:
            return self._unfused(x, slope, residual)
        weight = self._packed_weight(x)
        if self.transposed:
            out = torch.ops.mkldnn._convolution_transpose_pointwise(
                x, weight, self.bias, self.padding, [0, 0], self.stride, self.dilation, 1, "none", [], "")
            return _finish(out, slope, residual)
        if residual is not None and residual.dtype == self.dtype:
            return torch.ops.mkldnn._convolution_pointwise(
                x, residual, weight, self.bias, self.padding, self.stride, self.dilation, 1,
                "add", None, None, [], None)
        unary, scalars = ("leaky_relu", [slope]) if slope is not None else ("none", [])
        out = torch.ops.mkldnn._convolution_pointwise(
            x, weight, self.bias, self.padding, self.stride, self.dilation, 1, unary, scalars, "")
        return _finish(out, None, residual)

    def _unfused(self, x: torch.Tensor, slope: float | None, residual: torch.Tensor | None) -> torch.Tensor:
        if self.transposed and x.shape[-1] <= PLAIN_TRANSPOSED_MAX_LENGTH:
            out = F.conv_transpose1d(x.squeeze(2).contiguous(), self.weight.squeeze(2), self.bias, self.stride[1],
                                     self.padding[1], dilation=self.dilation[1])
            out = out.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        elif self.transposed:
            out = F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, dilation=self.dilation)
        else:
            out = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)
        return _finish(out, slope, residual)


class SpectralConv(FFTConv1d):
    """A residual block's Conv1d as an FFTConv1d, called like FusedConv."""

    def __init__(self, conv: nn.Conv1d, block: int) -> None:
        super().__init__(conv.weight, conv.bias, dilation=conv.dilation[0], block=block)

    def forward(self, x: torch.Tensor, slope: float | None = None,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        return _finish(super().forward(x), slope, residual)


class WideConv(nn.Module):
    """A residual-block conv wide enough for DFT blocks: SpectralConv on calls of at least
    `min_macs` direct multiply-adds, FusedConv on shorter ones. Both share the conv's weight."""

    def __init__(self, conv: nn.Conv1d, *, block: int, min_macs: int, dtype: torch.dtype, fused: bool) -> None:
        super().__init__()
        self.direct = FusedConv(conv, dtype=dtype, fused=fused)
        self.spectral = SpectralConv(conv, block)
        self.dtype = dtype  # what the direct path computes in, as FusedConv.dtype
        self.min_steps = -(-min_macs // (conv.in_channels * conv.out_channels * conv.kernel_size[0]))

    def path(self, x: torch.Tensor) -> nn.Module:
        """The conv that computes x (B, C, 1, L): its B * L steps decide."""
        return self.spectral if x.shape[0] * x.shape[-1] >= self.min_steps else self.direct

    def forward(self, x: torch.Tensor, slope: float | None = None,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        return self.path(x)(x, slope=slope, residual=residual)


def _activated(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """leaky_relu(x) in `dtype`, as a new tensor. Rounding first and activating the rounded copy
    in place reads and writes fewer bytes than activating in fp32 and rounding (0.26 vs 0.38 ms
    for 1M values here); the two differ by at most one bf16 rounding step."""
    if x.dtype == dtype:
        return F.leaky_relu(x, LRELU_SLOPE)
    return F.leaky_relu_(x.to(dtype), LRELU_SLOPE)


def _finish(out: torch.Tensor, slope: float | None, residual: torch.Tensor | None) -> torch.Tensor:
    """leaky_relu and the residual sum, in place on the conv's fresh output where dtypes allow."""
    if slope is not None:
        out = F.leaky_relu_(out, slope)
    if residual is not None:
        # In the residual's (fp32) precision; a + b == b + a exactly, so in place is safe.
        out = out.add_(residual) if out.dtype == residual.dtype else residual + out.to(residual.dtype)
    return out


# The DFT path's matrix products run in torch's BLAS (MKL), the direct convs in oneDNN, and the
# two compare differently across CPUs: on the Intel VMs MKL's GEMM ran 1.6x oneDNN's conv rate
# and the DFT blocks gained up to 1.3-1.6x per layer; on an AMD Zen 5 VM MKL's fp32 GEMM ran 180
# GFLOP/s against 390-470 for oneDNN's convs, and V1's wide layers ran 1.2-2.3x slower as DFT
# blocks. So the default asks the CPU once per process (dft_blocks_pay_off).
PROBE_CHANNELS, PROBE_KERNEL, PROBE_LENGTH = 256, 11, 2048  # V1's widest conv on a 256-frame mel


@functools.lru_cache(maxsize=None)
def dft_blocks_pay_off(threads: int) -> bool:
    """True when a DFT-block conv beats the direct channels-last conv on this CPU with `threads`
    threads, timed on one V1-sized layer (fastest of 3 calls each, taking turns; ~0.1 s once)."""
    with torch.random.fork_rng(devices=[]), torch.inference_mode():  # leaves the caller's RNG as it was
        conv = nn.Conv1d(PROBE_CHANNELS, PROBE_CHANNELS, PROBE_KERNEL, padding=PROBE_KERNEL // 2)
        x = torch.randn(1, PROBE_CHANNELS, 1, PROBE_LENGTH).contiguous(memory_format=torch.channels_last)
        candidates = [FusedConv(conv, dtype=torch.float32, fused=False), SpectralConv(conv, FFT_BLOCK)]
        seconds: list[list[float]] = [[], []]
        for _ in range(4):
            for candidate, times in zip(candidates, seconds):
                start = time.perf_counter()
                candidate(x)
                times.append(time.perf_counter() - start)
    direct, spectral = (min(times[1:]) for times in seconds)  # the first round warms up
    return spectral < direct


class FastGenerator(nn.Module):
    """Inference-only twin of a folded Generator: same call, same output (to float rounding).

    Args:
        generator: a Generator with weight norm folded (layers.fold_weight_norm).
        dtype: compute dtype of the inner convolutions (float32 or bfloat16; see module doc).
        fused: oneDNN's fused conv ops with weights packed for the input size (CPU only; in a
            bf16 engine only its bf16 convs): leaky_relu and same-dtype residual sums fused into
            the convs. In bf16 6-15% faster than plain conv2d here (V1, AMX), and with stages in
            chunks of at most fused_chunk_values values, no more memory, so the Vocoder uses it
            for bf16 on CPU. In fp32 it gained 0-3% for V1 and held more memory (oneDNN's
            buffers grow with the input: +0.9 GB for V1 at 8 s unchunked), so fp32 does not.
        fft_min_width: residual-block convs with in_channels * kernel_size of at least this (and
            FFT_MIN_KERNEL taps) run as FFT convolutions when computing fp32 on CPU; None runs
            every conv directly; "auto": FFT_MIN_WIDTH where DFT blocks pay off on this CPU
            (dft_blocks_pay_off), else None.
        fft_min_macs: those convs take DFT blocks only on calls whose direct form needs at least
            this many multiply-adds (B * L * C_in * C_out * k); shorter calls run directly
            (WideConv). 0: on every call.
    """

    # Most samples of a stage computed at a time (plus context; chunks are equalised). Measured
    # for V1 at 693 frames: peak RSS 658-723 MB over 5 runs, against 630-985 MB unchunked (heap
    # growth in the last stage) and 862-884 MB for the eager generator; 5% slower than unchunked
    # (8192: 11% slower).
    stage_chunk = 32768
    # In a fused engine a chunk also holds at most this many values (channels x samples), but no
    # fewer than FUSED_MIN_CHUNK samples: oneDNN's fused primitives keep buffers that grow with
    # their input. Process peaks for V1 in bf16 at 128 / 693 / 2000 frames: 411-442 / 474-479 /
    # 664-708 MB, against 426-445 / 495-513 / 639-688 unfused with stage_chunk alone and 492 /
    # 483 / 652 fused with 2 ** 20 values.
    fused_chunk_values = 2 ** 19

    def __init__(self, generator: Generator, *, dtype: torch.dtype = torch.float32, fused: bool = False,
                 fft_min_width: int | None | Literal["auto"] = "auto", fft_min_macs: int = FFT_MIN_MACS) -> None:
        super().__init__()
        on_cpu = generator.conv_pre.weight.device.type == "cpu"
        # Packed bf16 needs a CPU with bf16 instructions; without, torch's plain ops emulate it.
        self.fused = fused and on_cpu and onednn_available() and (dtype == torch.float32 or cpu_bf16_supported())
        self.dtype = dtype
        self.upsample_rates = generator.upsample_rates
        self.num_kernels = generator.num_kernels
        self.hop_length = generator.hop_length
        self.two_convs = isinstance(generator.resblocks[0], ResBlock1)
        # bf16 policy (module doc): conv_pre, the first and last upsampling convs and conv_post in
        # fp32; the last stage's convs where narrow; residual streams where narrow or at the ends.
        last = len(generator.ups) - 1
        widths = [up.out_channels for up in generator.ups]
        self.stage_dtypes = [dtype if i < last and width >= (BF16_MIN_FIRST_RESIDUAL_WIDTH if i == 0 else
                                                             BF16_MIN_RESIDUAL_WIDTH) else torch.float32
                             for i, width in enumerate(widths)]
        conv_dtypes = [dtype] * last + [dtype if widths[last] >= BF16_MIN_LAST_WIDTH else torch.float32]
        self.conv_pre = self._direct(generator.conv_pre, torch.float32, torch.float32)
        self.conv_post = self._direct(generator.conv_post, torch.float32, torch.float32)
        self.ups = nn.ModuleList(self._direct(up, torch.float32 if i in (0, last) else dtype, self.stage_dtypes[i])
                                 for i, up in enumerate(generator.ups))
        fft_min_width = self._fft_min_width(generator, fft_min_width if on_cpu and dtype == torch.float32 else None)

        def block_conv(conv: nn.Conv1d, stage: int) -> nn.Module:
            block = fft_block(conv.in_channels, conv.kernel_size[0], fft_min_width)
            if block is None:
                return self._direct(conv, conv_dtypes[stage], self.stage_dtypes[stage])
            return WideConv(conv, block=block, min_macs=fft_min_macs, dtype=conv_dtypes[stage], fused=self.fused)

        self.blocks = nn.ModuleList(
            nn.ModuleList(block_conv(conv, stage=i // self.num_kernels) for conv in self._convs(block))
            for i, block in enumerate(generator.resblocks))
        # How far a stage's blocks look to each side: the sum of their convs' half-spans.
        reach = [sum(conv.dilation[0] * (conv.kernel_size[0] - 1) // 2 for conv in self._convs(block))
                 for block in generator.resblocks]
        self.reach = [max(reach[i:i + self.num_kernels]) for i in range(0, len(reach), self.num_kernels)]

    def _direct(self, conv: nn.Module, conv_dtype: torch.dtype, stage_dtype: torch.dtype) -> FusedConv:
        """A conv run directly in conv_dtype, in a stage whose residual stream is stage_dtype. The
        fused ops only where both are the engine's dtype: in bf16, fusing the convs of stages with
        an fp32 residual stream (no fusable sum) or of fp32 convs gained nothing measurable for V1
        (70.6 vs 70.0 ms at 128 frames), and fp32 fused convs hold more memory."""
        return FusedConv(conv, dtype=conv_dtype, fused=self.fused and conv_dtype == stage_dtype == self.dtype)

    def _fft_min_width(self, generator: Generator, fft_min_width: int | None | Literal["auto"]) -> int | None:
        """FastGenerator's fft_min_width with "auto" resolved (asks the probe only if some
        residual-block conv is wide enough for DFT blocks)."""
        if fft_min_width != "auto":
            return fft_min_width
        wide = any(fft_block(conv.in_channels, conv.kernel_size[0]) for block in generator.resblocks
                   for conv in self._convs(block))
        return FFT_MIN_WIDTH if wide and dft_blocks_pay_off(torch.get_num_threads()) else None

    def _convs(self, block: nn.Module) -> list[nn.Module]:
        """A residual block's convs in the order they run (conv_d, conv_1, conv_d', ...)."""
        if not self.two_convs:
            return list(block.convs)
        return [conv for pair in zip(block.convs1, block.convs2) for conv in pair]

    @torch.inference_mode()
    def forward(self, mel: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """mel (B, n_mels, T) float32 -> audio (B, 1, T * hop) float32; `lengths` as Generator."""
        x = mel.float().unsqueeze(2).contiguous(memory_format=torch.channels_last)
        mask = self._mask(lengths, 1, x)
        x = _masked(self.conv_pre(_masked(x, mask)), mask)
        scale = 1
        for i, (up, rate) in enumerate(zip(self.ups, self.upsample_rates)):
            scale *= rate
            x = up(F.leaky_relu(x, LRELU_SLOPE)).to(self.stage_dtypes[i])
            mask = self._mask(lengths, scale, x)
            x = self._stage(i, _masked(x, mask), mask)
        x = self.conv_post(F.leaky_relu(x, FINAL_LRELU_SLOPE))
        return torch.tanh(x.float()).squeeze(2).contiguous()

    def _stage(self, stage: int, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The mean of a stage's K residual blocks on x (B, C, 1, L). A long x goes in equal chunks of
        at most stage_chunk samples, each computed on a window with the blocks' reach of context on
        both sides, so that every activation stays small (22 MB each for 8 s of V1 audio otherwise):
        a chunk depends on nothing outside its window, so the result is exact. All windows have
        one length (edge windows lean inwards), so oneDNN builds one primitive per conv and stage,
        not one per chunk length (it caches them: 0.1-0.3 MB each)."""
        blocks = self.blocks[stage * self.num_kernels:(stage + 1) * self.num_kernels]
        length, reach = x.shape[-1], self.reach[stage]
        limit = self.stage_chunk
        if any(getattr(conv, "fused", False) for conv in blocks[0]):
            limit = min(limit, max(FUSED_MIN_CHUNK, self.fused_chunk_values // x.shape[1]))
        chunk = -(-length // -(-length // limit))  # equal chunks, none longer than the limit
        window = chunk + 2 * reach
        if window >= length:
            return self._blocks_mean(blocks, x, mask)
        out = torch.empty_like(x)
        for start in range(0, length, chunk):
            stop = min(start + chunk, length)
            low = min(max(0, start - reach), length - window)
            part = self._blocks_mean(blocks, x[..., low:low + window], None if mask is None else mask[..., low:low + window])
            out[..., start:stop] = part[..., start - low:stop - low]
        return out

    def _blocks_mean(self, blocks: nn.ModuleList, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The mean of the K residual blocks on x (B, C, 1, L). In reduced precision the blocks share
        one leaky_relu(x), rounded once (half x's size); in fp32 each block computes its own, which
        keeps one activation fewer alive."""
        dtype = blocks[0][0].dtype
        shared = _activated(x, dtype) if dtype != torch.float32 else None
        total = self._block(blocks[0], x, mask, shared)
        for block in blocks[1:]:
            total = total.add_(self._block(block, x, mask, shared))
        return total.div_(self.num_kernels)

    def _block(self, convs: nn.ModuleList, x: torch.Tensor, mask: torch.Tensor | None,
               activated_x: torch.Tensor | None = None) -> torch.Tensor:
        """One residual block on x (B, C, 1, L); `activated_x`: leaky_relu(x) if already computed."""
        step = 2 if self.two_convs else 1
        for j in range(0, len(convs), step):
            activated = activated_x if j == 0 and activated_x is not None else _activated(x, convs[j].dtype)
            if self.two_convs:
                activated = _masked(convs[j](activated, slope=LRELU_SLOPE), mask)
            # Masking the sum equals adding a masked residual: x is already zero where masked.
            x = _masked(convs[j + step - 1](activated, residual=x), mask)
        return x

    @staticmethod
    def _mask(lengths: torch.Tensor | None, scale: int, x: torch.Tensor) -> torch.Tensor | None:
        if lengths is None:
            return None
        return _time_mask(lengths.to(x.device), scale, x.shape[-1], x.dtype).unsqueeze(2)

