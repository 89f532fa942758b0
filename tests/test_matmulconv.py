import pytest
import torch
from torch.nn import functional as F

from hifigan.matmulconv import matmul_conv1d

GEOMETRIES = [  # (batch, in, out, length, kernel, stride, padding)
    (3, 4, 6, 20, 5, 3, 2),    # the period discriminator's strided layers
    (2, 1, 8, 17, 15, 1, 7),   # one input channel, a kernel almost as long as the input
    (2, 5, 4, 9, 5, 1, 2),     # stride 1
    (1, 3, 2, 30, 4, 2, 0),    # even kernel, no padding
]


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_values_and_gradients_equal_conv1d(geometry):
    batch, c_in, c_out, length, k, stride, padding = geometry
    torch.manual_seed(0)
    x = torch.randn(batch, c_in, length, dtype=torch.float64, requires_grad=True)
    w = torch.randn(c_out, c_in, k, dtype=torch.float64, requires_grad=True)
    b = torch.randn(c_out, dtype=torch.float64, requires_grad=True)
    ours = matmul_conv1d(x, w, b, stride=stride, padding=padding)
    expected = F.conv1d(x, w, b, stride, padding)
    torch.testing.assert_close(ours, expected)
    assert ours.transpose(1, 2).is_contiguous()  # channels-last memory, the next layer's input
    assert torch.autograd.gradcheck(lambda *t: matmul_conv1d(*t, stride=stride, padding=padding), (x, w, b))
    assert torch.autograd.gradcheck(lambda x, w: matmul_conv1d(x, w, None, stride=stride, padding=padding), (x, w))


def test_channels_last_input_and_partial_gradients():
    torch.manual_seed(1)
    x = torch.randn(2, 12, 6).transpose(1, 2).requires_grad_()  # (2, 6, 12), channels-last strides
    w, b = torch.randn(4, 6, 3), torch.randn(4)
    grad_x, = torch.autograd.grad(matmul_conv1d(x, w, b, stride=2, padding=1).square().sum(), x)
    expected, = torch.autograd.grad(F.conv1d(x, w, b, 2, 1).square().sum(), x)
    torch.testing.assert_close(grad_x, expected)
    w.requires_grad_()
    y = matmul_conv1d(x.detach(), w, b, stride=2, padding=1)  # weight gradient only: no input gradient
    grad_w, = torch.autograd.grad(y.sum(), w)
    torch.testing.assert_close(grad_w, torch.autograd.grad(F.conv1d(x.detach(), w, b, 2, 1).sum(), w)[0])


def test_autocast_computes_in_its_dtype_and_returns_parameter_dtype_gradients():
    torch.manual_seed(2)
    x = torch.randn(2, 16, 40, requires_grad=True)
    w = (0.1 * torch.randn(32, 16, 5)).requires_grad_()
    b = torch.randn(32, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = matmul_conv1d(x, w, b, stride=3, padding=2)
        expected = F.conv1d(x, w, b, 3, 2)
    assert ours.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(ours.float(), expected.float(), rtol=2e-2, atol=2e-2)
    grads = torch.autograd.grad(ours.float().square().sum(), [x, w, b])
    assert [g.dtype for g in grads] == [torch.float32] * 3
    expected_grads = torch.autograd.grad(expected.float().square().sum(), [x, w, b])
    for ours_grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(ours_grad, expected_grad, rtol=5e-2, atol=5e-2 * expected_grad.abs().max().item())
