"""Convolution helpers shared by the generator and discriminators: padding, init, weight norm."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrizations, parametrize


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    """Padding that keeps the length of a stride-1 convolution: (k*d - d) / 2."""
    return (kernel_size * dilation - dilation) // 2


def weight_norm(module: nn.Module) -> nn.Module:
    """Weight-normalise `module.weight` over all dims but 0 (the reference's dim=0)."""
    return parametrizations.weight_norm(module, name="weight", dim=0)


def _weight_parametrization(module: nn.Module, kind: type) -> parametrize.ParametrizationList | None:
    """module.parametrizations.weight when its one parametrisation is a `kind`, else None."""
    if not parametrize.is_parametrized(module, "weight"):
        return None
    parametrization = module.parametrizations.weight
    return parametrization if len(parametrization) == 1 and isinstance(parametrization[0], kind) else None


def weight_norm_parts(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(v, g) of a module whose weight `weight_norm` normalises (w = g v / ||v||), else None."""
    parametrization = _weight_parametrization(module, parametrizations._WeightNorm)
    if parametrization is None or parametrization[0].dim != 0:
        return None
    return parametrization.original1, parametrization.original0


def _weight_norm_scale(v: torch.Tensor, g: torch.Tensor, norms: torch.Tensor | None = None) -> torch.Tensor:
    """g / ||v|| per output channel (C_out,); `norms`: ||v|| per row when already computed."""
    return g.flatten() / (torch.linalg.vector_norm(v.flatten(1), dim=1) if norms is None else norms)


class _WeightNormFactors(torch.autograd.Function):
    """(v, g) -> (v, g / ||v|| per output channel), for a conv that computes with v and scales its outputs
    by the second, held constant (block_conv1d's and matmul_conv1d's `scale`).

    Its backward adds what reaches v and g through the scale. With G the conv's gradient for v (which
    carries the scale already): d/dv = G - <G, v> / ||v||^2 v and d/dg = <G, v> / g, per output channel.
    These are weight norm's gradients, reached without forming g v / ||v||: the forward pass reads the
    weight once (its norms) instead of also writing the normalised copy.
    """

    @staticmethod
    def forward(ctx, v: torch.Tensor, g: torch.Tensor):
        norms = torch.linalg.vector_norm(v.flatten(1), dim=1)
        scale = _weight_norm_scale(v, g, norms)
        ctx.save_for_backward(v, g, norms)
        ctx.mark_non_differentiable(scale)
        return v.view_as(v), scale

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _grad_scale):
        v, g, norms = ctx.saved_tensors
        norms = norms.view_as(g)
        # Weight norm's own backward kernel for w = ||v|| v / ||v|| (g = ||v||, the scale 1) gives
        # G - <G, v> / ||v||^2 v and <G, v> / ||v||; the true g's gradient is <G, v> / g.
        grad_v, grad_unit = torch.ops.aten._weight_norm_interface_backward(grad.contiguous(), v, norms, norms, 0)
        return grad_v, grad_unit * norms / g


def weight_norm_factors(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(v, g / ||v||) of a weight-normalised module, for convs that scale their outputs instead of
    normalising the weight (`scale` of block_conv1d and matmul_conv1d); gradients reach v and g as they
    would through the normalised weight. Where no gradient is wanted, v is a detached alias of the
    parameter. None for a module without weight norm, or with some g = 0 (whose gradient the scaled
    outputs cannot give)."""
    parts = weight_norm_parts(module)
    if parts is None:
        return None
    v, g = parts
    if not bool(torch.all(g != 0)):
        return None
    if torch.is_grad_enabled() and (v.requires_grad or g.requires_grad):
        return _WeightNormFactors.apply(v, g)
    with torch.no_grad():
        return v.detach(), _weight_norm_scale(v, g)


def output_scale_gradient(y: torch.Tensor, bias: torch.Tensor | None, scale: torch.Tensor,
                          grad_y: torch.Tensor) -> torch.Tensor:
    """d loss / d scale for a conv's outputs y = scale * z + bias, z what the conv itself computes
    (recovered as (y - bias) / scale, so scale must not be 0): grad_y * z summed to scale's shape."""
    product = y * grad_y if bias is None else (y - bias).mul_(grad_y)
    return product.sum_to_size(scale.shape).div_(scale)


class _SpectralScales(torch.autograd.Function):
    """weight (C_out, ...), the power iteration's u and v for each of `parts` calls (parts, C_out),
    (parts, n) -> 1 / sigma per call (parts,), sigma = u . (W v) with u and v held constant, as torch's
    spectral norm computes it: for a conv that computes with W and scales its outputs by 1 / sigma."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, us: torch.Tensor, vs: torch.Tensor) -> torch.Tensor:
        rows = weight.flatten(1)
        sigmas = torch.stack([torch.vdot(u, torch.mv(rows, v)) for u, v in zip(us, vs)])
        ctx.save_for_backward(us, vs, sigmas)
        ctx.shape = weight.shape
        return 1 / sigmas

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        us, vs, sigmas = ctx.saved_tensors  # d(1 / sigma) / dW = -u v^T / sigma^2: one product for all calls
        grad_weight = torch.mm((us * (-grad / sigmas.square()).unsqueeze(1)).T, vs)
        return grad_weight.view(ctx.shape), None, None


class _SpectralDivision(torch.autograd.Function):
    """weight / sigma with sigma = u . (W v), u and v held constant: torch's spectral-norm output.

    Its backward pass, grad / sigma - <grad, W> / sigma^2 * u v^T (d sigma / dW = u v^T), takes two
    sweeps over the weight (a dot product, then one addr) instead of autograd's chain of divisions,
    products and temporaries: the first scale discriminator's bf16 discriminator step, 187 -> 155-162 ms.
    """

    @staticmethod
    def forward(ctx, weight: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        sigma = torch.vdot(u, torch.mv(weight.flatten(1), v))
        ctx.save_for_backward(weight, u, v, sigma)
        return weight / sigma

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        weight, u, v, sigma = ctx.saved_tensors
        grad = grad.contiguous()
        s = sigma.item()
        inner = torch.vdot(grad.view(-1), weight.reshape(-1)).item()
        result = torch.addr(grad.view(len(grad), -1), u, v, beta=1 / s, alpha=-inner / (s * s))
        return result.view_as(weight), None, None


class SpectralNorm(parametrizations._SpectralNorm):
    """The spectral norm of the original HiFi-GAN (torch.nn.utils.spectral_norm, the pre-hook version)
    in the form of torch's parametrisation (its state-dict keys: parametrizations.weight.0._u/_v),
    for weights normalised along dim 0; the output is computed by _SpectralDivision.

    Two things differ from torch's parametrisation, and both change the outputs: each training call's
    power iteration updates v from u, then u from v (torch's parametrisation: u, then v), and no
    iterations run at construction (it runs 15). With the same state, the parametrisation's outputs
    were 1.7-2.8e-4 off the original's over three calls; on a fresh module with the same seed, 36%
    on the first call."""

    def __init__(self, weight: torch.Tensor) -> None:
        nn.Module.__init__(self)  # not the parametrisation's: it would run its 15 iterations
        if weight.ndim < 2:
            raise ValueError(f"spectral norm needs a weight of 2 or more dims, got {weight.ndim}")
        self.dim, self.eps, self.n_power_iterations = 0, 1e-12, 1
        rows, columns = weight.shape[0], weight[0].numel()
        u, v = weight.new_empty(rows).normal_(0, 1), weight.new_empty(columns).normal_(0, 1)  # u first, as there
        self.register_buffer("_u", F.normalize(u, dim=0, eps=self.eps))
        self.register_buffer("_v", F.normalize(v, dim=0, eps=self.eps))

    @torch.no_grad()
    def _power_method(self, weight_mat: torch.Tensor, n_power_iterations: int) -> None:
        for _ in range(n_power_iterations):
            self._v = F.normalize(torch.mv(weight_mat.t(), self._u), dim=0, eps=self.eps, out=self._v)
            self._u = F.normalize(torch.mv(weight_mat, self._v), dim=0, eps=self.eps, out=self._u)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.training:
            self._power_method(weight.flatten(1), self.n_power_iterations)
        u = self._u.clone(memory_format=torch.contiguous_format)
        v = self._v.clone(memory_format=torch.contiguous_format)
        return _SpectralDivision.apply(weight, u, v)

    def scales(self, weight: torch.Tensor, calls: int) -> torch.Tensor:
        """1 / sigma of each of `calls` calls in a row (parts of a batch), as (calls,): what dividing the
        weight by sigma would do to a conv's outputs, with the power iteration advanced before each call
        in training, as `calls` forward calls would; gradients reach the weight as through them."""
        us, vs = [], []
        for _ in range(calls):
            if self.training:
                self._power_method(weight.flatten(1), self.n_power_iterations)
            us.append(self._u.clone())
            vs.append(self._v.clone())
        return _SpectralScales.apply(weight, torch.stack(us), torch.stack(vs))


def spectral_norm(module: nn.Module) -> nn.Module:
    """Spectral-normalise `module.weight` along dim 0 (used by the first scale discriminator)."""
    # unsafe: torch's consistency check calls the parametrisation once, a power iteration the original never ran
    parametrize.register_parametrization(module, "weight", SpectralNorm(module.weight), unsafe=True)
    return module


def spectral_norm_factors(module: nn.Module, calls: int = 1,
                          alias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(weight, 1 / sigma for each of `calls` calls (calls,)) of a spectral-normalised module, for convs
    that scale their outputs instead of dividing the weight (SpectralNorm.scales); None without
    spectral norm. Where no gradient is wanted the weight is a detached alias of the parameter:
    `alias` when given (one kept across calls lets the kernels reuse their transforms of it)."""
    parametrization = _weight_parametrization(module, SpectralNorm)
    if parametrization is None:
        return None
    weight = parametrization.original
    if not (torch.is_grad_enabled() and weight.requires_grad):
        weight = weight.detach() if alias is None else alias
    return weight, parametrization[0].scales(weight, calls)


def has_spectral_scales(module: nn.Module) -> bool:
    """Whether spectral_norm_factors applies: the module's weight is normalised by our SpectralNorm
    (torch's own spectral-norm parametrisation has no per-call scales)."""
    return _weight_parametrization(module, SpectralNorm) is not None


def spectral_norm_vectors(module: nn.Module) -> list[torch.Tensor]:
    """The power iteration's state (the u and v buffers) of every spectral norm inside `module`."""
    return [buffer for m in module.modules() if isinstance(m, parametrizations._SpectralNorm) for buffer in (m._u, m._v)]


def normalized(module: nn.Module, norm: str) -> nn.Module:
    """Apply "weight", "spectral" or "none" normalisation to a conv layer."""
    if norm == "weight":
        return weight_norm(module)
    if norm == "spectral":
        return spectral_norm(module)
    if norm == "none":
        return module
    raise ValueError(f"unknown norm {norm!r}; use 'weight', 'spectral' or 'none'")


def fold_weight_norm(model: nn.Module) -> nn.Module:
    """Replace every parametrised weight by its current value, in place; returns `model`.

    Uses torch's own weight-norm kernel, so the folded weight equals what the reference's
    remove_weight_norm computes, bit for bit.
    """
    for module in model.modules():
        if parametrize.is_parametrized(module):
            # torch removes the parametrised property from the module's class, and a deepcopy
            # shares that class with its original: give this module a private copy of it first.
            cls = type(module)
            module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return model


def init_normal(module: nn.Module, std: float = 0.01) -> nn.Module:
    """Draw a plain conv's weight from N(0, std) and return it; call before weight_norm.

    The reference intended this init but applied it after weight norm, where it is lost on the
    next forward; initialising first gives g = ||w|| for the drawn weight, as intended.
    """
    with torch.no_grad():
        module.weight.normal_(0.0, std)
    return module


def split_weight_norm(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A plain weight -> weight-norm (g, v) with g * v / ||v|| == weight exactly.

    v = weight and g = ||weight|| over all dims but 0, computed by the same kernel that
    weight norm uses, so that refolding reproduces `weight` bit for bit.
    """
    ones = torch.ones((weight.shape[0],) + (1,) * (weight.dim() - 1), dtype=weight.dtype, device=weight.device)
    try:
        _, norms = torch._weight_norm_interface(weight, ones, 0)
    except (AttributeError, RuntimeError):  # private API; the public norm can differ in the last bit
        norms = torch.norm_except_dim(weight, 2, 0)
    return norms.reshape(ones.shape).clone(), weight.clone()


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a conv on x computes in: autocast's where it is on for x's device, else x's."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


def channels_last_1d(x: torch.Tensor) -> torch.Tensor:
    """x (N, C, L) with channels-last memory (x.transpose(1, 2) contiguous); no copy if it already is."""
    return x.transpose(1, 2).contiguous().transpose(1, 2)


def conv1d_channels_last(conv: nn.Conv1d, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """`conv(x)` for x (N, C_in, L), run by oneDNN as a (1, k) Conv2d on channels-last data
    (with `weight` in place of conv.weight when given).

    Returns (N, C_out, L_out) with channels-last strides; a chain of such calls copies the input
    only once. On a 2-core AVX-512 CPU this ran the scale discriminators' stride-2 grouped layers
    (forward and both gradients) 1.45-2x faster than the channels-first Conv1d, and their stride-4
    layers mostly slower (up to 2.4x), so callers choose it per layer.
    """
    x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
    weight = conv.weight if weight is None else weight
    y = F.conv2d(x, weight.unsqueeze(2), conv.bias, (1, conv.stride[0]), (0, conv.padding[0]),
                 (1, conv.dilation[0]), conv.groups)
    return y.squeeze(2)


def hangs_in_cpu_fp16(conv: nn.Conv1d, x: torch.Tensor) -> bool:
    """True for a conv that oneDNN 3.12 (torch 2.13) may never finish building in fp16 on CPUs
    with AVX512-FP16: a depthwise conv of at most 16 channels with a kernel of 15 or more (seen
    hanging on an Intel Xeon; 24 or more channels, or k <= 14, ran)."""
    fp16 = x.dtype == torch.float16 or (torch.is_autocast_enabled("cpu")
                                        and torch.get_autocast_dtype("cpu") == torch.float16)
    return (x.device.type == "cpu" and fp16 and conv.groups == conv.in_channels == conv.out_channels <= 16
            and conv.kernel_size[0] >= 15)


def conv1d_in_fp32(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """`conv(x)` computed in fp32 outside autocast (its parameters' dtype), returned in x's dtype."""
    with torch.autocast(x.device.type, enabled=False):
        return conv(x.to(conv.weight.dtype)).to(x.dtype)
