"""A 1-D convolution computed as one matrix product over channels-last data (training on the CPU).

The discriminators' wide layers see short time axes: the period discriminator's 1024 -> 1024,
k = 5 layer runs over 51 x 2 positions at period 2 for a batch of four 8192-sample clips. There
oneDNN's convolutions run well below the CPU's matrix-product rate. This module unfolds the input
into a (positions, C_in * k) matrix (im2col) and multiplies it by the weight viewed as
(C_out, C_in * k): the weight needs no reordering copy, and the output is channels-last memory,
which is what the next layer unfolds. On a 2-core AMX Xeon the five period discriminators'
discriminator-step pass (batch 4, forward and both gradients) took 303-320 ms this way against
385-414 ms as (k, 1) Conv2d in bf16, 559-569 against 604-605 ms in fp32; the matrix products
themselves ran at about 1.1-1.4 TFLOP/s in bf16 (the torch profiler's times).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .layers import compute_dtype, output_scale_gradient


def _unfold(x: torch.Tensor, kernel_size: int, stride: int, padding: int, length_out: int) -> torch.Tensor:
    """x (N, T, C) contiguous -> columns (N * T_out, C * k), ordered like a (C_out, C_in, k) weight."""
    if padding:
        x = F.pad(x, (0, 0, padding, padding))
    n, _, c = x.shape
    batch_stride, time_stride, channel_stride = x.stride()
    windows = x.as_strided((n, length_out, c, kernel_size), (batch_stride, time_stride * stride, channel_stride, time_stride))
    return windows.reshape(n * length_out, c * kernel_size)


def _fold(columns: torch.Tensor, shape: tuple[int, int, int], kernel_size: int, stride: int, padding: int) -> torch.Tensor:
    """The adjoint of _unfold: columns (N * T_out, C * k) summed back onto (N, T, C)."""
    n, length, c = shape
    # One reordering copy to (N, T_out, k, C) makes each tap's adds below contiguous: adds and
    # copies of a bf16 MPD discriminator-step pass took 55 ms instead of 80 adding every k-th element.
    windows = columns.view(n, -1, c, kernel_size).transpose(2, 3).contiguous()
    length_out = windows.shape[1]
    total = columns.new_zeros(n, length + 2 * padding, c)
    for tap in range(kernel_size):  # k adds: each tap's rows land `stride` positions apart
        total[:, tap: tap + stride * (length_out - 1) + 1: stride] += windows[:, :, tap]
    return total[:, padding: padding + length]


class _MatmulConv1d(torch.autograd.Function):
    """x (N, T, C_in) contiguous, weight (C_out, C_in, k) -> (N, T_out, C_out), computed in `dtype`; scale
    ((C_out,) or (N, 1, 1)) multiplies the outputs before the bias is added."""

    @staticmethod
    def forward(ctx, x, weight, bias, scale, stride: int, padding: int, dtype: torch.dtype):
        n, length, _ = x.shape
        out_channels, _, kernel_size = weight.shape
        length_out = (length + 2 * padding - kernel_size) // stride + 1
        columns = _unfold(x.to(dtype), kernel_size, stride, padding, length_out)
        matrix = weight.to(dtype).reshape(out_channels, -1)
        if bias is None or scale is not None:
            y = columns @ matrix.t()
        else:
            y = torch.addmm(bias.to(dtype), columns, matrix.t())
        y = y.view(n, length_out, out_channels)
        if scale is not None:  # y * scale + bias, in place
            scale = scale.to(dtype)
            if bias is None:
                y.mul_(scale)
            else:
                torch.addcmul(bias.to(dtype), y, scale, out=y)
        scale_gradient = ctx.needs_input_grad[3]
        ctx.save_for_backward(columns, matrix, scale, y if scale_gradient else None,
                              bias if scale_gradient else None)
        ctx.geometry = (x.shape, x.dtype, weight.shape, weight.dtype, kernel_size, stride, padding)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        columns, matrix, scale, y, bias = ctx.saved_tensors
        x_shape, x_dtype, w_shape, w_dtype, kernel_size, stride, padding = ctx.geometry
        grad_outputs = grad_y.to(matrix.dtype)
        grad = (grad_outputs if scale is None else grad_outputs * scale).reshape(-1, w_shape[0])
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _fold(grad @ matrix, x_shape, kernel_size, stride, padding).to(x_dtype)
        if ctx.needs_input_grad[1]:
            grad_w = (grad.t() @ columns).view(w_shape).to(w_dtype)
        if ctx.needs_input_grad[2]:
            # summed in fp32 at least: 16-bit sums over thousands of positions lose too much
            grad_b = grad_outputs.sum((0, 1), dtype=torch.promote_types(grad_outputs.dtype, torch.float32)).to(w_dtype)
        grad_scale = output_scale_gradient(y, bias, scale, grad_outputs) if ctx.needs_input_grad[3] else None
        return grad_x, grad_w, grad_b, grad_scale, None, None, None


def matmul_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, *, stride: int = 1,
                  padding: int = 0, scale: torch.Tensor | None = None) -> torch.Tensor:
    """F.conv1d(x, weight, bias, stride, padding) for ungrouped convs, as one matrix product. `scale`,
    (C_out,) per output channel or (N, 1, 1) per item, multiplies the outputs before the bias is added
    (see blockconv.block_conv1d).

    x (N, C_in, T) in any memory layout -> (N, C_out, T_out) with channels-last strides (its
    transpose(1, 2) is contiguous). Under autocast it computes in the autocast dtype, as a conv would.
    """
    dtype = compute_dtype(x)
    with torch.autocast(x.device.type, enabled=False):
        y = _MatmulConv1d.apply(x.transpose(1, 2).contiguous(), weight, bias, scale, stride, padding, dtype)
    return y.transpose(1, 2)
