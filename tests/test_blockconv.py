import pytest
import torch
from torch.nn import functional as F

from hifigan.blockconv import block_conv1d, dft_basis, winograd_basis

DFT_GEOMETRIES = [  # (batch, in, out, length, kernel, stride, padding, groups, block); blocks of ceil(k / s) taps
    (2, 8, 12, 50, 5, 2, 2, 4, 16),     # grouped, stride 2
    (2, 4, 4, 37, 7, 3, 3, 2, 16),      # stride 3: 3 taps per phase, the last phase's third one zero
    (1, 6, 6, 40, 41, 2, 20, 3, 64),    # the scale discriminators' kernel, longer than the input
    (2, 4, 8, 19, 3, 1, 0, 1, 8),       # ungrouped, no padding
    (2, 4, 4, 33, 5, 4, 2, 2, 12),      # stride 4, the input's tail never read
    (2, 8, 16, 29, 41, 2, 20, 4, 32),   # odd length (the pooled scales' 4097): the zero tap reads padding
    (1, 16, 32, 21, 41, 4, 20, 16, 32), # the stride-4 layers: 11 taps per phase, 4 x 1 channels per group
    (1, 16, 8, 20, 5, 1, 2, 1, 16),     # 2 blocks of 16 channels: the complex products' rows interleaved
]
DILATED_GEOMETRIES = [  # (batch, channels, length, kernel, dilation, padding, block, kind)
    (2, 4, 40, 7, 3, 9, 16, "dft"),     # 'same' padding, the generator's residual blocks
    (1, 3, 23, 11, 5, 25, 32, "dft"),   # length not a multiple of the dilation, one block per phase
    (2, 4, 17, 3, 2, 0, 8, "dft"),      # no padding: the input's tail past the last block is never read
    (2, 4, 30, 5, 3, 6, 0, "winograd"),
]
WINOGRAD_GEOMETRIES = [  # (batch, in, out, length, kernel, padding, groups)
    (3, 6, 5, 13, 5, 2, 1),
    (2, 4, 4, 9, 5, 0, 2),
    (2, 3, 3, 4, 3, 1, 1),
    (1, 2, 2, 1, 5, 2, 1),              # one sample: a single block, mostly padding
]


def _tensors(batch, c_in, c_out, length, k, groups, dtype=torch.float64):
    x = torch.randn(batch, c_in, length, dtype=dtype, requires_grad=True)
    w = torch.randn(c_out, c_in // groups, k, dtype=dtype, requires_grad=True)
    b = torch.randn(c_out, dtype=dtype, requires_grad=True)
    return x, w, b


@pytest.mark.parametrize("geometry", DFT_GEOMETRIES)
def test_dft_blocks_equal_conv1d_with_gradients(geometry):
    batch, c_in, c_out, length, k, stride, padding, groups, block = geometry
    torch.manual_seed(0)
    x, w, b = _tensors(batch, c_in, c_out, length, k, groups)
    basis = dft_basis(block, -(-k // stride))
    settings = dict(stride=stride, padding=padding, groups=groups)
    ours = block_conv1d(x, w, b, basis, **settings)
    torch.testing.assert_close(ours, F.conv1d(x, w, b, stride, padding, 1, groups))
    assert ours.transpose(1, 2).is_contiguous()  # channels-last memory
    assert torch.autograd.gradcheck(lambda *t: block_conv1d(*t, basis, **settings), (x, w, b))
    assert torch.autograd.gradcheck(lambda x, w: block_conv1d(x, w, None, basis, **settings), (x, w))


@pytest.mark.parametrize("geometry", WINOGRAD_GEOMETRIES)
def test_winograd_equals_conv1d_with_gradients(geometry):
    batch, c_in, c_out, length, k, padding, groups = geometry
    torch.manual_seed(1)
    x, w, b = _tensors(batch, c_in, c_out, length, k, groups)
    basis = winograd_basis(k)
    torch.testing.assert_close(block_conv1d(x, w, b, basis, padding=padding, groups=groups),
                               F.conv1d(x, w, b, 1, padding, 1, groups))
    assert torch.autograd.gradcheck(lambda *t: block_conv1d(*t, basis, padding=padding, groups=groups), (x, w, b))


@pytest.mark.parametrize("geometry", DILATED_GEOMETRIES)
def test_dilated_kernels_equal_conv1d_with_gradients(geometry):
    batch, channels, length, k, dilation, padding, block, kind = geometry
    torch.manual_seed(4)
    x, w, b = _tensors(batch, channels, channels, length, k, 1)
    basis = dft_basis(block, k) if kind == "dft" else winograd_basis(k)
    ours = block_conv1d(x, w, b, basis, padding=padding, dilation=dilation)
    torch.testing.assert_close(ours, F.conv1d(x, w, b, 1, padding, dilation))
    assert ours.transpose(1, 2).is_contiguous()
    assert torch.autograd.gradcheck(lambda *t: block_conv1d(*t, basis, padding=padding, dilation=dilation), (x, w, b))


@pytest.mark.parametrize("basis, groups, stride, k", [(dft_basis(64, 21), 4, 2, 41), (dft_basis(32, 11), 16, 4, 41),
                                                     (winograd_basis(5), 1, 1, 5)])
def test_float32_error_stays_near_a_direct_convs(basis, groups, stride, k):
    """Against float64: fp32 Winograd F(4, 5) stays within 1e-5 of the largest output (measured
    ~2e-6), DFT blocks within 2e-6; gradients likewise."""
    torch.manual_seed(2)
    x, w, b = _tensors(2, 64, 64, 300, k, groups)
    w.data *= 0.05
    exact = F.conv1d(x, w, b, stride, k // 2, 1, groups)
    grad_out = torch.randn_like(exact)
    exact_grads = torch.autograd.grad(exact, (x, w), grad_out)
    x32, w32, b32 = (t.detach().float().requires_grad_() for t in (x, w, b))
    ours = block_conv1d(x32, w32, b32, basis, stride=stride, padding=k // 2, groups=groups)
    tolerance = 1e-5 if basis.parts == 1 else 2e-6
    assert ours.dtype == torch.float32
    assert (ours.double() - exact).abs().max() <= tolerance * exact.abs().max()
    for ours_grad, exact_grad in zip(torch.autograd.grad(ours, (x32, w32), grad_out.float()), exact_grads):
        assert (ours_grad.double() - exact_grad).abs().max() <= tolerance * exact_grad.abs().max()


def test_computes_in_float32_under_autocast_and_for_half_inputs():
    torch.manual_seed(3)
    x, w, b = (t.detach().float() for t in _tensors(2, 8, 8, 40, 5, 2))
    basis = winograd_basis(5)
    expected = F.conv1d(x, w, b, 1, 2, 1, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = block_conv1d(x.bfloat16(), w, b, basis, padding=2, groups=2)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, F.conv1d(x.bfloat16().float(), w, b, 1, 2, 1, 2), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours, expected, rtol=2e-2, atol=2e-2)


def test_bases_refuse_what_they_cannot_compute():
    with pytest.raises(ValueError, match="even block at least as long as the kernel"):
        dft_basis(32, 41)
    with pytest.raises(ValueError, match="even block"):
        dft_basis(63, 5)
    with pytest.raises(ValueError, match=r"Winograd F\(4, 7\) needs 9 points"):
        winograd_basis(7)
    with pytest.raises(ValueError, match=r"a dilation \(2\) or a stride \(2\), not both"):
        block_conv1d(torch.zeros(1, 2, 50), torch.zeros(2, 2, 5), None, dft_basis(16, 3), stride=2, dilation=2)
    with pytest.raises(ValueError, match="a k=5, stride-2 conv needs a basis for 3 taps, not 5"):
        block_conv1d(torch.zeros(1, 2, 50), torch.zeros(2, 2, 5), None, dft_basis(16, 5), stride=2)


def test_a_weight_without_gradient_reuses_its_coefficients_until_it_changes():
    torch.manual_seed(5)
    x = torch.randn(2, 4, 30)
    w = torch.randn(6, 4, 5, 1)  # as the period discriminators hold it: each call squeezes a new view
    basis = winograd_basis(5)
    first = block_conv1d(x, w.squeeze(-1), None, basis, padding=2)
    assert w._block_coefficients is not None
    torch.testing.assert_close(block_conv1d(x, w.squeeze(-1), None, basis, padding=2), first)
    w.mul_(2)  # an in-place change: its version moves, the coefficients are computed again
    torch.testing.assert_close(block_conv1d(x, w.squeeze(-1), None, basis, padding=2), 2 * first)
    torch.testing.assert_close(block_conv1d(x, w[:3].squeeze(-1), None, basis, padding=2), 2 * first[:, :3])
    parameter = torch.nn.Parameter(w.squeeze(-1).clone(), requires_grad=False)
    block_conv1d(x, parameter, None, basis, padding=2)
    assert not hasattr(parameter, "_block_coefficients")  # a module's state stays as it was
