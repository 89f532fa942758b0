"""1-D convolutions computed in blocks by fast transforms, with their backward pass (training in fp32 on the CPU).

A conv cut into blocks of n input samples is: one linear transform of each block (n samples ->
P coefficients), one matrix product per coefficient between the blocks' coefficients and the
transformed kernel, and one transform back to the block's outputs. Two kinds of transform:

- **DFT blocks** (the scale discriminators' grouped k = 41 layers, the generator's k = 11 and
  k = 7 residual convs). Per frequency bin and group, Z = X * conj(W) (a cross-correlation, what
  Conv1d computes) is one complex product, four real ones: about 4 * (n / 2 + 1) / m real
  multiply-adds per output and channel pair, m = n - k + 1, instead of k (2.95 instead of 41 at
  n = 128). A dilation d splits the input into its d phases, each an undilated convolution of
  its own row; a stride s splits it into s phases too, but as channels: the conv becomes a
  stride-1 conv of s x C_in channels and ceil(k / s) taps over every s-th sample (polyphase), so
  that no product is spent on an output the stride skips. oneDNN runs the
  grouped layers far below the CPU's matrix-product rate: forward and backward of the 128 -> 128,
  4-group, stride-2 layer at batch 4 took 50-65 ms this way against 187-210 ms on a 2-core AMX
  Xeon in fp32.
- **Winograd F(4, k)** (the 1024 -> 1024, k = 5, stride-1 layers of both discriminators, a third
  of a training step's arithmetic). Per point of the 8-point transform, one real product: 8
  multiplies per 4 outputs instead of 20. The points 0, +-1, +-2, +-1/2 and infinity keep the
  fp32 error at about 2-3e-6 of the largest output (4-5x that of a direct conv); F(6, 5), with
  +-3 or +-3/2 added, reached 1.5-3.4e-5, so it is not used.

Every step is a real matrix product over channels-last data, as in fftconv.py (the inference
version of the DFT blocks): the block transform is one (P, n) matrix applied to each (n, C) input
block, the kernel's transform is computed from the weight (once for a weight that needs no
gradient), and the inverse yields only the outputs kept. The backward pass runs the transposes
of the same matrices. Both are for fp32 (and fp64): in 16-bit floats the transforms would lose
too much, and oneDNN's bf16 kernels are fast there anyway.
"""

from __future__ import annotations

import dataclasses
import functools
from fractions import Fraction
from typing import Iterator

import torch

from .fftconv import _unit_circle
from .layers import output_scale_gradient

WINOGRAD_POINTS = (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2))  # and infinity: F(4, 5)
FULL_PRECISION = (torch.float32, torch.float64)  # the dtypes whose convs are worth computing in blocks


@dataclasses.dataclass(frozen=True)
class Basis:
    """A block transform: signal (P, n) maps a block of n samples to P coefficients, kernel (P, k)
    maps the taps to theirs, inverse (m, P) gives the block's m outputs. `parts` = 2 for complex
    coefficients (P / 2 real rows, then P / 2 imaginary rows), 1 for real ones."""

    signal: torch.Tensor
    kernel: torch.Tensor
    inverse: torch.Tensor
    parts: int

    @property
    def block(self) -> int:
        return self.signal.shape[1]

    @property
    def kept(self) -> int:
        return self.inverse.shape[0]

    @property
    def kernel_size(self) -> int:
        return self.kernel.shape[1]

    def to(self, dtype: torch.dtype) -> "Basis":
        return dataclasses.replace(self, signal=self.signal.to(dtype), kernel=self.kernel.to(dtype),
                                   inverse=self.inverse.to(dtype))


@functools.lru_cache(maxsize=32)
def dft_basis(block: int, kernel_size: int) -> Basis:
    """DFT blocks of n = `block` samples (bins = n // 2 + 1), in float64:
    [Xr; Xi] = signal @ block with X = rfft(block); [Vr; Vi] = kernel @ taps with V = conj(rfft(taps, n));
    inverse @ [Zr; Zi] = outputs t = 0 .. m - 1 of irfft(Z), m = n - k + 1."""
    bins = block // 2 + 1
    valid = block - kernel_size + 1
    if block % 2 or valid < 1:
        raise ValueError(f"DFT blocks need an even block at least as long as the kernel, "
                         f"got block={block}, k={kernel_size}")
    cos, sin = _unit_circle(bins, block, block)
    signal = torch.cat([cos, -sin])
    cos, sin = _unit_circle(bins, kernel_size, block)
    kernel = torch.cat([cos, sin])
    scale = torch.full((bins, 1), 2.0 / block, dtype=torch.float64)
    scale[0] = scale[-1] = 1.0 / block  # DC and Nyquist appear once in a real signal's spectrum
    cos, sin = _unit_circle(bins, valid, block)
    inverse = torch.cat([cos * scale, -sin * scale]).T.contiguous()
    return Basis(signal, kernel, inverse, parts=2)


def _evaluation(points, degree: int) -> torch.Tensor:
    """(len(points) + 1, degree) rows evaluating a polynomial of `degree` coefficients at each point and
    at infinity (its leading coefficient)."""
    rows = [[float(Fraction(p) ** j) for j in range(degree)] for p in points]
    return torch.tensor(rows + [[0.0] * (degree - 1) + [1.0]], dtype=torch.float64)


@functools.lru_cache(maxsize=8)
def winograd_basis(kernel_size: int, outputs: int = 4) -> Basis:
    """Winograd F(m, k) for a stride-1 cross-correlation, m = `outputs`, in float64.

    A full convolution of m signal and k kernel samples is interpolated from its values at
    m + k - 1 points (Toom-Cook): c = E_c^-1 ((E_k g) * (E_m d)). The correlation of m + k - 1
    samples with the kernel is its transpose: y = E_m^T ((E_k g) * (E_c^-T d))."""
    size = outputs + kernel_size - 1
    points = WINOGRAD_POINTS[:size - 1]
    if len(points) != size - 1:
        raise ValueError(f"Winograd F({outputs}, {kernel_size}) needs {size - 1} points; {len(WINOGRAD_POINTS)} are set")
    signal = torch.linalg.inv(_evaluation(points, size)).T.contiguous()
    return Basis(signal, _evaluation(points, kernel_size), _evaluation(points, outputs).T.contiguous(), parts=1)


def _split(coefficients: torch.Tensor, groups: int, parts: int) -> tuple[torch.Tensor, ...]:
    """coefficients (N, blocks, P, C) contiguous -> `parts` views (P / parts * G, N * blocks, C / G): one
    matrix per coefficient and group, rows the blocks."""
    items, blocks, rows, channels = coefficients.shape
    per_part, per_group = rows // parts, channels // groups
    shape, strides = (per_part * groups, items * blocks, per_group), (per_group, rows * channels, 1)
    return tuple(coefficients.as_strided(shape, strides, coefficients.storage_offset() + part * per_part * channels)
                 for part in range(parts))


def _interleaved(real: torch.Tensor, imaginary: torch.Tensor) -> torch.Tensor | None:
    """One (batch, 2 x rows, columns) view of both parts, their rows taking turns, when _split laid
    them out so (each imaginary row half a row stride after its real row); else None."""
    row_stride = real.stride(1)
    if (real.stride() != imaginary.stride() or row_stride % 2
            or imaginary.storage_offset() - real.storage_offset() != row_stride // 2):
        return None
    batch, rows, columns = real.shape
    return real.as_strided((batch, 2 * rows, columns), (real.stride(0), row_stride // 2, real.stride(2)),
                           real.storage_offset())


def _product(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...], *, conjugate_b: bool = False) -> torch.Tensor:
    """Batched products of real (1 part) or complex (2 parts: real, imaginary) matrices, b optionally
    conjugated -> (parts, batch, rows, columns): the parts stacked, so that the transforms that follow
    are one matrix product over all of them."""
    out = a[0].new_empty(len(a), a[0].shape[0], a[0].shape[1], b[0].shape[2])
    if len(a) == 1:
        torch.bmm(a[0], b[0], out=out[0])
        return out
    (ar, ai), (br, bi) = a, b
    sign = -1 if conjugate_b else 1
    both = _interleaved(ar, ai) if 2 * ar.shape[1] <= ar.shape[2] else None
    if both is not None:
        # Few rows for the matrices of b (short sequences): each of b's parts is read once, not
        # twice, and the four products are combined after (MSD 1024 -> 1024 at 12 rows, 64 x 64
        # per group: 1.97 -> 1.68 ms; 6 rows: 1.61 -> 1.09; 24 rows of 256 x 256: 1.07 -> 0.89).
        by_real, by_imaginary = (torch.bmm(both, part).unflatten(1, (-1, 2)) for part in (br, bi))
        torch.sub(by_real[:, :, 0], by_imaginary[:, :, 1], alpha=sign, out=out[0])
        torch.add(by_real[:, :, 1], by_imaginary[:, :, 0], alpha=sign, out=out[1])
        return out
    torch.bmm(ar, br, out=out[0]).baddbmm_(ai, bi, alpha=-sign)
    torch.bmm(ai, br, out=out[1]).baddbmm_(ar, bi, alpha=sign)
    return out


def _transposed(parts: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(p.transpose(1, 2) for p in parts)


def _transform_back(matrix: torch.Tensor, products: torch.Tensor) -> torch.Tensor:
    """matrix (rows, P) applied to the per-coefficient products (parts, P / parts * G, R, c) -> (rows, G, R, c):
    one matrix product over all groups and blocks (the coefficient is the slowest index)."""
    _, _, blocks, columns = products.shape
    return (matrix @ products.view(matrix.shape[1], -1)).view(matrix.shape[0], -1, blocks, columns)


def _transform_blocks(matrix: torch.Tensor, signal: torch.Tensor, blocks: int, hop: int) -> torch.Tensor:
    """signal (N, L, C) -> (N, blocks, P, C): matrix (P, n) applied to each block of n samples, `hop` apart."""
    items, _, channels = signal.shape
    block = matrix.shape[1]
    out = signal.new_empty(items, blocks, matrix.shape[0], channels)
    step = signal.stride(1)
    for item in range(items):  # one bmm per item: its blocks are one strided batch of overlapping views
        windows = signal[item].as_strided((blocks, block, channels), (hop * step, step, 1))
        torch.bmm(matrix.expand(blocks, -1, -1), windows, out=out[item])
    return out


def _polyphase_weight(weight: torch.Tensor, stride: int) -> torch.Tensor:
    """weight (C_out, i, k) -> (C_out, s * i, ceil(k / s)): tap t of phase r's channel j is tap
    t * s + r of channel j (zero past k), the weight of the stride-1 conv over the input's s phases."""
    if stride == 1:
        return weight
    out_channels, per_in, kernel_size = weight.shape
    taps = -(-kernel_size // stride)
    padded = torch.nn.functional.pad(weight, (0, taps * stride - kernel_size))
    return padded.view(out_channels, per_in, taps, stride).permute(0, 3, 1, 2).reshape(out_channels, -1, taps)


def _strided_weight_gradient(grad: torch.Tensor, stride: int, kernel_size: int) -> torch.Tensor:
    """The adjoint of _polyphase_weight: (C_out, s * i, ceil(k / s)) -> (C_out, i, k)."""
    if stride == 1:
        return grad
    out_channels, _, taps = grad.shape
    by_tap = grad.view(out_channels, stride, -1, taps).permute(0, 2, 3, 1)  # (C_out, i, taps, s)
    return by_tap.reshape(out_channels, -1, taps * stride)[..., :kernel_size]


def _kernel_coefficients(weight: torch.Tensor, kernel: torch.Tensor, groups: int, parts: int,
                         stride: int) -> tuple[torch.Tensor, ...]:
    """weight (C_out, C_in / G, k) -> `parts` tensors (P / parts * G, C_out / G, s * C_in / G): per
    coefficient and group, the (polyphase) weight as it is laid out (one matrix product).

    A weight that needs no gradient and is not a module's parameter keeps its coefficients while it
    is unchanged (its _version): the trainer's generator step runs two passes over the same frozen
    (normalised) discriminator weights."""
    holder = weight if weight._base is None else weight._base  # a view (a squeezed 2-D weight) is made per call
    cacheable = not weight.requires_grad and not isinstance(holder, torch.nn.Parameter)  # nothing rides on a module
    key = (weight.shape, weight.stride(), weight.storage_offset(), weight._version, kernel.shape, kernel.dtype,
           groups, stride)
    cached = getattr(holder, "_block_coefficients", None) if cacheable else None
    if cached is not None and cached[0] == key and torch.equal(cached[1], kernel):
        return cached[2]
    phased = _polyphase_weight(weight, stride)
    out_channels, per_in, taps = phased.shape
    # Into a preallocated output: torch's mm allocating its own (oneDNN's matmul) took 4.7 ms instead of
    # 1.2 for the 1024 -> 1024, k = 5 Winograd weights (8 x 5 @ 5 x 1M, 2-core AMX Xeon) before the
    # training heap went into huge pages; with it (hostmemory) both took 1.3 ms and whole steps did not differ.
    flat = phased.reshape(-1, taps).T  # (taps, C_out * s * C_in / G)
    coefficients = torch.mm(kernel, flat, out=flat.new_empty(kernel.shape[0], flat.shape[1]))
    result = tuple(coefficients.view(parts, -1, out_channels // groups, per_in))
    if cacheable:
        holder._block_coefficients = (key, kernel, result)
    return result


@dataclasses.dataclass(frozen=True)
class _Geometry:
    """Sizes of one call. A dilation d splits each item into d phases (the samples t = r mod d), each
    an undilated convolution of its own row: the blocks run over items * d rows. A stride s splits it
    into s phases laid side by side as channels, (G, s, C_in / G) per sample: the blocks run over
    items rows of s * C_in channels. Either way a row holds `padded` samples of each phase."""

    items: int
    length: int
    channels: int
    padding: int
    dilation: int
    stride: int
    groups: int
    length_out: int
    blocks: int
    padded: int

    @property
    def phases(self) -> int:
        return self.dilation * self.stride  # one of the two is 1

    @property
    def row_channels(self) -> int:
        """Channels of a row the blocks read: a stride's phases lie side by side as channels."""
        return self.stride * self.channels

    def phase_spans(self) -> Iterator[tuple[int, int, int, int]]:
        """(phase r, first and last + 1 sample v of the phase's row that hold input, the input sample at
        the first): row sample v of phase r is input sample d * v + r - padding (d phases)."""
        d, p = self.phases, self.padding
        for phase in range(d):
            first = max(0, -(-(p - phase) // d))
            last = min(self.padded, (self.length - 1 + p - phase) // d + 1)
            if last > first:
                yield phase, first, last, d * first + phase - p

    def phase_views(self, rows: torch.Tensor) -> list[torch.Tensor]:
        """rows (N * d, >= padded, s * C) contiguous -> per phase a view (N, >= padded, G, C / G) of its samples."""
        per_group = self.channels // self.groups
        split = rows.view(self.items, self.dilation, -1, self.groups, self.stride, per_group)
        if self.dilation > 1:
            return [split[:, phase, :, :, 0] for phase in range(self.dilation)]
        return [split[:, 0, :, :, phase] for phase in range(self.stride)]

    def samples_of(self, x: torch.Tensor, start: int, count: int) -> torch.Tensor:
        """x (N, T, C) -> the view (N, count, G, C / G) of every d-th sample from `start`."""
        return x[:, start:start + self.phases * (count - 1) + 1:self.phases].unflatten(-1, (self.groups, -1))


def _to_phases(x: torch.Tensor, g: _Geometry) -> torch.Tensor:
    """x (N, T, C) -> the zero-padded rows (N * d, padded, s * C) the blocks read."""
    rows = x.new_empty(g.items * g.dilation, g.padded, g.row_channels)
    views = g.phase_views(rows)
    filled = [(0, 0)] * g.phases
    for phase, first, last, start in g.phase_spans():
        views[phase][:, first:last] = g.samples_of(x, start, last - first)
        filled[phase] = (first, last)
    for view, (first, last) in zip(views, filled):  # zero only the padding: a fill of the whole took 1.3 ms of 50
        view[:, :first].zero_()
        view[:, last:].zero_()
    return rows


def _from_phases(rows: torch.Tensor, g: _Geometry) -> torch.Tensor:
    """The adjoint of _to_phases: gradients of the rows (N * d, >= padded, s * C) -> of x (N, T, C)."""
    if g.phases == 1 and rows.shape[1] >= g.padding + g.length:
        return rows[:, g.padding:g.padding + g.length]
    spans = list(g.phase_spans())
    covered = sum(last - first for _, first, last, _ in spans) == g.length  # each sample is in one phase, once
    x = rows.new_empty(g.items, g.length, g.channels) if covered else rows.new_zeros(g.items, g.length, g.channels)
    views = g.phase_views(rows)
    for phase, first, last, start in spans:
        g.samples_of(x, start, last - first).copy_(views[phase][:, first:last])
    return x


def _write_outputs(blocks: torch.Tensor, target: torch.Tensor, bias: torch.Tensor | None,
                   scale: torch.Tensor | None) -> None:
    """The first L of the B * m outputs of blocks (N, B, m, G, o) (times scale, (G, o) or (N, 1, 1, 1, 1),
    plus bias (G, o)) into target (N, L, G, o): full blocks in one pass, the last one's kept outputs in
    another."""
    items, _, kept, groups, per_group = blocks.shape
    full, rest = divmod(target.shape[1], kept)
    pieces = [(blocks[:, :full], target[:, :full * kept].view(items, full, kept, groups, per_group))]
    if rest:
        pieces.append((blocks[:, full:full + 1, :rest], target[:, full * kept:].unsqueeze(1)))
    for source, out in pieces:
        if scale is not None and bias is not None:
            torch.addcmul(bias, source, scale, out=out)
        elif scale is not None:
            torch.mul(source, scale, out=out)
        elif bias is not None:
            torch.add(source, bias, out=out)
        else:
            out.copy_(source)


def _gather_outputs(blocks: torch.Tensor, g: _Geometry, bias: torch.Tensor | None,
                    scale: torch.Tensor | None) -> torch.Tensor:
    """blocks (N * d, B, m, G, o), any strides -> outputs (N, T_out, G * o) contiguous, phases interleaved
    (times scale, (G, o) or (N, 1, 1, 1, 1), plus bias (G, o); either may be None)."""
    *_, groups, per_group = blocks.shape
    d = g.dilation
    phase_length = -(-g.length_out // d)
    out = blocks.new_empty(g.items, phase_length * d, groups * per_group)
    by_phase = blocks.view(g.items, d, *blocks.shape[1:])
    interleaved = out.view(g.items, phase_length, d, groups, per_group)
    for phase in range(d):
        _write_outputs(by_phase[:, phase], interleaved[:, :, phase], bias, scale)
    return out if phase_length * d == g.length_out else out[:, :g.length_out].contiguous()


def _grouped_scale(scale: torch.Tensor, groups: int) -> torch.Tensor:
    """An output scale, (C,) per channel or (N, 1, 1) per item, shaped for blocks' outputs (N, B, m, G, o)."""
    return scale.view(groups, -1) if scale.dim() == 1 else scale.view(len(scale), 1, 1, 1, 1)


def _phase_gradients(grad_y: torch.Tensor, g: _Geometry, length: int, scale: torch.Tensor | None) -> torch.Tensor:
    """grad_y (N, T_out, C) (times scale, the outputs' factor: (C,) or (N, 1, 1)) -> (N * d, length, C):
    each dilation phase's output gradients, zero past its end."""
    d = g.dilation
    grads = grad_y.new_empty(g.items, d, length, grad_y.shape[-1])
    for phase in range(d):
        phase_grads = grad_y[:, phase::d]
        if scale is None:
            grads[:, phase, :phase_grads.shape[1]] = phase_grads
        else:
            torch.mul(phase_grads, scale, out=grads[:, phase, :phase_grads.shape[1]])
        grads[:, phase, phase_grads.shape[1]:].zero_()
    return grads.view(-1, length, grad_y.shape[-1])


class _BlockConv1d(torch.autograd.Function):
    """x (N, T, C_in) contiguous, weight (C_out, C_in / G, k) -> (N, T_out, C_out) contiguous; scale ((C_out,)
    or (N, 1, 1)) multiplies the outputs before the bias is added."""

    @staticmethod
    def forward(ctx, x, weight, bias, scale, basis: Basis, padding: int, dilation: int, stride: int, groups: int):
        basis = basis.to(x.dtype)
        items, length, channels = x.shape
        length_out = (length + 2 * padding - dilation * (weight.shape[-1] - 1) - 1) // stride + 1
        blocks = -(-length_out // (dilation * basis.kept))
        geometry = _Geometry(items, length, channels, padding, dilation, stride, groups, length_out, blocks,
                             (blocks - 1) * basis.kept + basis.block)
        rows = _to_phases(x, geometry)
        coefficients = _transform_blocks(basis.signal, rows, blocks, basis.kept)  # (N * d, blocks, P, s * C_in)
        del rows
        weights = _kernel_coefficients(weight, basis.kernel, groups, basis.parts, stride)  # each (P / parts * G, o, i)
        products = _product(_split(coefficients, groups, basis.parts), _transposed(weights))
        outputs = _transform_back(basis.inverse, products)  # (m, G, N * d * blocks, o)
        by_group = outputs.view(basis.kept, groups, items * dilation, blocks, -1).permute(2, 3, 0, 1, 4)
        y = _gather_outputs(by_group, geometry, None if bias is None else bias.view(groups, -1),
                            None if scale is None else _grouped_scale(scale, groups))
        scale_gradient = ctx.needs_input_grad[3]
        ctx.save_for_backward(scale, y if scale_gradient else None, bias if scale_gradient else None,
                              coefficients, *weights)
        ctx.basis, ctx.geometry, ctx.kernel_size = basis, geometry, weight.shape[-1]
        return y

    @staticmethod
    def backward(ctx, grad_y):
        scale, y, bias, coefficients, *weights = ctx.saved_tensors
        basis, geometry = ctx.basis, ctx.geometry
        grads = _phase_gradients(grad_y, geometry, geometry.blocks * basis.kept, scale)
        grad_coefficients = _transform_blocks(basis.inverse.T.contiguous(), grads, geometry.blocks, basis.kept)
        grad_parts = _split(grad_coefficients, geometry.groups, basis.parts)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _input_gradient(basis, geometry, _product(grad_parts, tuple(weights), conjugate_b=True))
        if ctx.needs_input_grad[1]:
            inputs = _split(coefficients, geometry.groups, basis.parts)  # d/dV^T = dZ^T conj(X)
            grad_w = _weight_gradient(basis, geometry, ctx.kernel_size,
                                      _product(_transposed(grad_parts), inputs, conjugate_b=True))
        if ctx.needs_input_grad[2]:
            grad_b = grad_y.sum((0, 1))
        grad_scale = output_scale_gradient(y, bias, scale, grad_y) if ctx.needs_input_grad[3] else None
        return grad_x, grad_w, grad_b, grad_scale, None, None, None, None, None


def _input_gradient(basis: Basis, geometry: _Geometry, grad_coefficients: torch.Tensor) -> torch.Tensor:
    """The blocks' coefficient gradients taken back through the block transform, summed onto the input samples."""
    g = geometry
    block, hop, rows = basis.block, basis.kept, g.items * g.dilation
    channels, per_group = g.row_channels, g.row_channels // g.groups
    windows = _transform_back(basis.signal.T, grad_coefficients)  # (n, G, N * d * blocks, s * i)
    windows = windows.view(block, g.groups, rows, g.blocks, per_group).permute(2, 3, 0, 1, 4)  # (N * d, blocks, n, G, s * i)
    # Without phases, one row long enough that _from_phases returns a view of it, not a copy.
    total = windows.new_empty(rows, max(g.padded, g.padding + g.length) if g.phases == 1 else g.padded, channels)
    total[:, g.blocks * hop:].zero_()
    for offset in range(0, block, hop):  # each `hop`-long slice of every block lands on disjoint samples
        size = min(hop, block - offset)
        target = total.as_strided((rows, g.blocks, size, g.groups, per_group),
                                  (total.stride(0), hop * channels, channels, per_group, 1),
                                  total.storage_offset() + offset * channels)
        if offset:
            target += windows[:, :, offset:offset + size]
        else:  # the first slices tile [0, blocks * hop) exactly: copied, no zeros to add to
            target.copy_(windows[:, :, :size])
    return _from_phases(total, g)


def _weight_gradient(basis: Basis, geometry: _Geometry, kernel_size: int, grad_weights: torch.Tensor) -> torch.Tensor:
    """d loss / d weight (C_out, C_in / G, k) from the gradients of the kernel's coefficients
    (parts, P / parts * G, o, s * i): their images under the kernel transform's transpose."""
    per_group = geometry.row_channels // geometry.groups
    grad = (grad_weights.view(basis.kernel.shape[0], -1).T @ basis.kernel).view(-1, per_group, basis.kernel_size)
    return _strided_weight_gradient(grad, geometry.stride, kernel_size)


def block_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, basis: Basis, *,
                 stride: int = 1, padding: int = 0, dilation: int = 1, groups: int = 1,
                 scale: torch.Tensor | None = None) -> torch.Tensor:
    """F.conv1d(x, weight, bias, stride, padding, dilation, groups) computed in blocks of `basis`,
    a basis for ceil(k / stride) taps (a stride runs as a stride-1 conv over the input's phases).
    `scale`, (C_out,) per output channel or (N, 1, 1) per item, multiplies the outputs before the bias
    is added: weight norm's g / ||v|| (layers.weight_norm_factors, a constant for the conv) or spectral
    norm's 1 / sigma (layers.spectral_norm_factors, whose gradient the conv computes).

    x (N, C_in, T) in any memory layout -> (N, C_out, T_out) with channels-last strides (its
    transpose(1, 2) is contiguous). It computes in float64 for float64 input, else in float32
    whatever autocast says: the transforms would lose too much in 16-bit floats.
    """
    if dilation > 1 and stride > 1:
        raise ValueError(f"block_conv1d runs a dilation ({dilation}) or a stride ({stride}), not both")
    taps = -(-weight.shape[-1] // stride)
    if basis.kernel_size != taps:
        raise ValueError(f"a k={weight.shape[-1]}, stride-{stride} conv needs a basis for {taps} taps, "
                         f"not {basis.kernel_size}")
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    bias, scale = (None if t is None else t.to(dtype) for t in (bias, scale))
    with torch.autocast(x.device.type, enabled=False):
        y = _BlockConv1d.apply(x.transpose(1, 2).to(dtype).contiguous(), weight.to(dtype), bias, scale, basis,
                               padding, dilation, stride, groups)
    return y.transpose(1, 2)
