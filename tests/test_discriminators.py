import copy
import subprocess
import sys

import pytest
import torch
from torch import nn

from hifigan import discriminators
from hifigan.blockconv import block_conv1d, dft_basis, winograd_basis
from hifigan.discriminators import MultiPeriodDiscriminator, MultiScaleDiscriminator, ScaleDiscriminator, frozen_weights
from hifigan.formats.common import to_legacy_norm
from hifigan.layers import (_SpectralDivision, _SpectralScales, _WeightNormFactors, hangs_in_cpu_fp16, spectral_norm, spectral_norm_vectors,
                            weight_norm, weight_norm_factors)
from hifigan.matmulconv import matmul_conv1d

TINY_MPD = dict(channels=(4, 8, 8, 16))
TINY_MSD = dict(channels=(16, 16, 16, 16, 16, 16, 16))


def test_reference_sizes():
    assert sum(p.numel() for p in MultiPeriodDiscriminator().parameters()) == 41_105_770
    assert sum(p.numel() for p in MultiScaleDiscriminator().parameters()) == 29_618_821


@pytest.mark.parametrize("length", [8192, 8191, 1000])
def test_period_discriminator_contract(length):
    mpd = MultiPeriodDiscriminator(**TINY_MPD)
    outputs = mpd(torch.randn(3, 1, length))
    assert len(outputs) == 5
    for (logits, feature_maps), period in zip(outputs, (2, 3, 5, 7, 11)):
        assert logits.dim() == 2 and logits.shape[0] == 3
        assert len(feature_maps) == 6
        assert feature_maps[0].shape[-1] == period  # (B, C, T/p, p): every period keeps its own column


@pytest.mark.parametrize("length", [8192, 4000])
def test_scale_discriminator_contract(length):
    msd = MultiScaleDiscriminator(**TINY_MSD)
    outputs = msd(torch.randn(2, 1, length))
    assert len(outputs) == 3
    lengths = [logits.shape[1] for logits, _ in outputs]
    assert lengths[0] > lengths[1] > lengths[2]  # each scale sees a pooled copy
    assert all(len(maps) == 8 for _, maps in outputs)


def test_period_discriminator_refuses_multichannel_audio():
    with pytest.raises(ValueError, match=r"mono audio \(B, 1, N\), got shape \(2, 2, 100\)"):
        MultiPeriodDiscriminator(**TINY_MPD)(torch.randn(2, 2, 100))


def test_first_scale_is_spectral_normalised_others_weight_normalised():
    keys = set(MultiScaleDiscriminator(**TINY_MSD).state_dict())
    assert "discriminators.0.convs.0.parametrizations.weight.original" in keys
    assert "discriminators.1.convs.0.parametrizations.weight.original0" in keys
    assert "discriminators.0.conv_post.parametrizations.weight.original" in keys


def test_spectral_norm_sees_each_part_in_turn():
    """parts=2 equals calling on real, then generated audio (the reference's order): the
    spectral-normalised scale advances its power iteration once per part."""
    torch.manual_seed(0)
    msd = MultiScaleDiscriminator(**TINY_MSD)
    separate, single = copy.deepcopy(msd), copy.deepcopy(msd)
    real, fake = torch.randn(2, 1, 4096), torch.randn(2, 1, 4096)
    joined = msd(torch.cat([real, fake]), parts=2)
    apart = [separate(real), separate(fake)]
    for scale, (logits, maps) in enumerate(joined):
        expected = [torch.cat([apart[0][scale][0], apart[1][scale][0]])] + [
            torch.cat(pair) for pair in zip(apart[0][scale][1], apart[1][scale][1])]
        for got, want in zip([logits, *maps], expected):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for key, value in separate.state_dict().items():  # two power iterations, as apart
        torch.testing.assert_close(msd.state_dict()[key], value, rtol=1e-5, atol=1e-6)
    single(torch.cat([real, fake]))  # one call: one power iteration
    assert not torch.allclose(single.state_dict()["discriminators.0.convs.0.parametrizations.weight.0._u"],
                              msd.state_dict()["discriminators.0.convs.0.parametrizations.weight.0._u"])
    logits_only = copy.deepcopy(separate)  # the state after two calls, as msd's
    for (logits, maps), (expected, _) in zip(logits_only(torch.cat([real, fake]), parts=2, feature_maps=False),
                                             msd(torch.cat([real, fake]), parts=2)):
        assert maps == []
        torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="a batch of 3 does not split into 2 equal parts"):
        msd(torch.randn(3, 1, 4096), parts=2)


def test_spectral_norm_is_the_originals_with_its_own_backward():
    """The original HiFi-GAN's spectral norm is torch.nn.utils.spectral_norm (a forward pre-hook):
    same random start (no iterations at construction), same power iteration (v from u, then u from
    v), so the same outputs, gradients and state, call after call; only the keys are renamed."""
    torch.manual_seed(0)
    ours, theirs = nn.Conv1d(8, 16, 5), nn.Conv1d(8, 16, 5)
    theirs.load_state_dict(ours.state_dict())
    torch.manual_seed(1)
    spectral_norm(ours)
    torch.manual_seed(1)
    torch.nn.utils.spectral_norm(theirs)
    assert to_legacy_norm(ours.state_dict()).keys() == theirs.state_dict().keys()
    x = torch.randn(2, 8, 40)
    for _ in range(3):  # each training call advances the power iteration
        outputs = [conv(x) for conv in (ours, theirs)]
        assert torch.equal(outputs[0], outputs[1])
        grads = [torch.autograd.grad(y.square().sum(), w)[0]
                 for y, w in zip(outputs, (ours.parametrizations.weight.original, theirs.weight_orig))]
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-5 * grads[1].abs().max().item())
        for key, value in theirs.state_dict().items():
            assert torch.equal(to_legacy_norm(ours.state_dict())[key], value), key
    ours.eval(), theirs.eval()
    assert torch.equal(ours(x), theirs(x))  # eval: no iteration
    assert len(spectral_norm_vectors(nn.Sequential(ours))) == 2
    weight = torch.randn(6, 4, 3, dtype=torch.float64, requires_grad=True)
    u, v = torch.randn(6, dtype=torch.float64), torch.randn(12, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda w: _SpectralDivision.apply(w, u, v), (weight,))


def test_frozen_weights_are_computed_once_and_leave_spectral_norm_running():
    torch.manual_seed(3)
    mpd, msd = MultiPeriodDiscriminator(**TINY_MPD), MultiScaleDiscriminator(**TINY_MSD)
    plain_msd = copy.deepcopy(msd)
    audio = torch.randn(2, 1, 4096)
    expected = [mpd(audio), plain_msd(audio), plain_msd(audio)]
    calls = []
    conv = mpd.discriminators[0].convs[1]
    conv.parametrizations.weight.register_forward_hook(lambda *_: calls.append(1))
    with frozen_weights([mpd, msd]):
        got = [mpd(audio), msd(audio), msd(audio)]
        assert calls == []  # fp32 on the CPU: the kernels scale their outputs by g / ||v||, no weight is formed
        v, scale = conv.frozen_factors
        assert v._base is None and not v.requires_grad and scale.shape == (conv.out_channels,)
    for (ours, theirs) in zip(got, expected):  # the same values; the spectral scale still advances per call
        for (logits, maps), (ref_logits, ref_maps) in zip(ours, theirs):
            torch.testing.assert_close(logits, ref_logits, rtol=0, atol=0)
    for key, value in plain_msd.state_dict().items():
        torch.testing.assert_close(msd.state_dict()[key], value, rtol=0, atol=0)
    assert "frozen_factors" not in conv.__dict__  # gone on exit
    spectral = msd.discriminators[0].convs[1]  # in DFT blocks: their weight transform is kept on the alias
    with frozen_weights([msd]), torch.no_grad():
        alias = spectral.frozen_alias
        assert alias.data_ptr() == spectral.parametrizations.weight.original.data_ptr() and alias._base is None
        msd(audio)
        kept = alias._block_coefficients
        msd(audio)
        assert alias._block_coefficients is kept  # transformed once for both calls
    assert "frozen_alias" not in spectral.__dict__
    with frozen_weights([mpd], dtype=torch.bfloat16):
        assert conv.frozen_weight.dtype == torch.bfloat16 and not conv.frozen_weight.requires_grad
        mpd(audio.bfloat16())
        assert len(calls) == 1  # normalised (and cast) on entry only, not on each call
    assert "frozen_weight" not in conv.__dict__


def test_gradients_reach_the_input():
    audio = torch.randn(1, 1, 2048, requires_grad=True)
    outputs = MultiPeriodDiscriminator(**TINY_MPD)(audio) + MultiScaleDiscriminator(**TINY_MSD)(audio)
    sum(logits.sum() for logits, _ in outputs).backward()
    assert audio.grad is not None and audio.grad.abs().sum() > 0


def _conv2d_period_discriminator(d, audio):
    """What the reference computes: (k, 1) Conv2d layers on audio viewed as (B, 1, N/p, p)."""
    batch, channels, length = audio.shape
    if length % d.period:
        audio = torch.nn.functional.pad(audio, (0, d.period - length % d.period), mode="reflect")
    x, maps = audio.view(batch, channels, -1, d.period), []
    for conv in d.convs:
        x = torch.nn.functional.leaky_relu(conv(x), 0.1)
        maps.append(x)
    maps.append(d.conv_post(x))
    return torch.flatten(maps[-1], 1, -1), maps


@pytest.mark.parametrize("length, channels", [(4096, (8, 16, 32, 32)), (4001, (8, 16, 32, 32)), (3001, (8, 16, 32, 64))])
def test_period_discriminator_equals_the_reference_conv2d_form(length, channels):
    """64 channels: the last stride-1 conv runs by Winograd (blockconv) in fp32, the others as matrix products."""
    torch.manual_seed(0)
    mpd = MultiPeriodDiscriminator(channels=channels)
    audio = torch.randn(2, 1, length, requires_grad=True)
    ours = mpd(audio)
    reference = [_conv2d_period_discriminator(d, audio) for d in mpd.discriminators]
    loss = lambda outputs: sum(l.square().sum() + sum(m.abs().mean() for m in maps) for l, maps in outputs)  # noqa: E731
    grads = [torch.autograd.grad(loss(out), [audio, *mpd.parameters()]) for out in (ours, reference)]
    for (logits, maps), (ref_logits, ref_maps) in zip(ours, reference):
        assert logits.shape == ref_logits.shape
        torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-5)
        for a, b in zip(maps, ref_maps):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(*grads):  # the input's gradient and every weight-norm parameter's
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_scale_discriminator_cpu_kernels_equal_channels_first():
    torch.manual_seed(2)
    first, last = "channels-first", "channels-last"
    kernels = {"channels-first": (first,) * 7, "default": None, "channels-last": (last,) * 7,
               "matmul": ("matmul", last, first, last, first, last, "matmul"),
               "blocks": ("matmul", "dft", first, "dft", "dft", last, "winograd")}
    reference = ScaleDiscriminator(channels=(8, 16, 16, 32, 32, 32, 64), cpu_kernels=kernels["channels-first"])
    audio = torch.randn(2, 1, 3001, requires_grad=True)
    loss = lambda logits, maps: logits.square().sum() + sum(m.abs().mean() for m in maps)  # noqa: E731
    expected = reference(audio)
    expected_grads = torch.autograd.grad(loss(*expected), [audio, *reference.parameters()])
    for name in ("default", "channels-last", "matmul", "blocks"):
        d = ScaleDiscriminator(channels=(8, 16, 16, 32, 32, 32, 64), cpu_kernels=kernels[name])
        d.load_state_dict(reference.state_dict())
        logits, maps = d(audio)
        assert [m.shape for m in maps] == [m.shape for m in expected[1]]
        if name == "default":  # chosen by the dtype computed in
            assert d.kernels_for(torch.float32) == ("matmul", "dft", "dft", "dft", "dft", "dft", "winograd")
            assert d.kernels_for(torch.float64) == d.kernels_for(torch.float32)
            assert d.kernels_for(torch.bfloat16) == ("matmul", last, last, first, first, first, "matmul")
            assert d.kernels_for(torch.float16) == ("matmul", first, first, first, first, first, "matmul")
        if name in ("matmul", "blocks"):  # each map in the layout of the kernel that reads it next (conv_post: matmul)
            expected_layouts = {"matmul": (0, 2, 4, 5, 6), "blocks": (0, 2, 3, 4, 5, 6)}[name]
            for i, m in enumerate(maps[:-1]):
                channels_last = not m.is_contiguous() and m.transpose(1, 2).is_contiguous()
                assert channels_last == (i in expected_layouts), (name, i)
        torch.testing.assert_close(logits, expected[0], rtol=1e-4, atol=1e-5)
        for a, b in zip(maps, expected[1]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        for a, b in zip(torch.autograd.grad(loss(logits, maps), [audio, *d.parameters()]), expected_grads):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_scale_discriminator_refuses_wrong_cpu_kernels():
    with pytest.raises(ValueError, match="cpu_kernels has 2 entries for 7 convs"):
        ScaleDiscriminator(cpu_kernels=("matmul", "channels-last"))
    with pytest.raises(ValueError, match="unknown CPU kernel 'fft'"):
        ScaleDiscriminator(cpu_kernels=("fft",) * 7)
    with pytest.raises(ValueError, match="ungrouped convs only, not groups=4"):
        ScaleDiscriminator(cpu_kernels=("matmul",) * 7)
    with pytest.raises(ValueError, match="stride-1 convs of at most 5 taps, not k=15, stride=1"):
        ScaleDiscriminator(cpu_kernels=("winograd",) * 7)
    ScaleDiscriminator(cpu_kernels=("dft",) * 7)  # any kernel fits a block of some length
    kernels = ScaleDiscriminator(groups=(1, 1, 16, 16, 16, 16, 1)).kernels_for(torch.bfloat16)
    assert kernels[:3] == ("matmul", "matmul", "channels-last")


def test_tiny_depthwise_scale_discriminator_trains_in_cpu_fp16():
    """oneDNN 3.12 hangs building fp16 depthwise convs of <= 16 channels with k >= 15 on
    AVX512-FP16 CPUs; such convs run in fp32. In a child process, so a hang fails the test."""
    script = """
import torch
from hifigan.discriminators import MultiScaleDiscriminator
torch.manual_seed(0)
msd = MultiScaleDiscriminator(channels=(16,) * 7)
audio = torch.randn(2, 1, 2048, requires_grad=True)
with torch.autocast("cpu", dtype=torch.float16):
    outputs = msd(audio)
loss = sum(logits.float().square().mean() for logits, _ in outputs)
loss.backward()
dtypes = {str(m.dtype) for _, maps in outputs for m in maps}
print(bool(torch.isfinite(loss)), bool(torch.isfinite(audio.grad).all()), sorted(dtypes))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:2] == ["True", "True"]
    assert "torch.float16" in result.stdout  # the other convs still ran in fp16


def test_only_small_depthwise_wide_kernels_leave_cpu_fp16():
    x16 = torch.zeros(1, 16, 64, dtype=torch.float16)
    assert hangs_in_cpu_fp16(nn.Conv1d(16, 16, 41, groups=16), x16)
    assert hangs_in_cpu_fp16(nn.Conv1d(8, 8, 15, groups=8), x16[:, :8])
    assert not hangs_in_cpu_fp16(nn.Conv1d(16, 16, 13, groups=16), x16)
    assert not hangs_in_cpu_fp16(nn.Conv1d(32, 32, 41, groups=32), torch.zeros(1, 32, 64, dtype=torch.float16))
    assert not hangs_in_cpu_fp16(nn.Conv1d(16, 16, 41, groups=4), x16)
    assert not hangs_in_cpu_fp16(nn.Conv1d(16, 16, 41, groups=16), x16.float())
    with torch.autocast("cpu", dtype=torch.float16):
        assert hangs_in_cpu_fp16(nn.Conv1d(16, 16, 41, groups=16), x16.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not hangs_in_cpu_fp16(nn.Conv1d(16, 16, 41, groups=16), x16.float())


def _weight_normed_conv(in_channels: int, out_channels: int, k: int, stride: int, groups: int = 1) -> nn.Conv1d:
    torch.manual_seed(4)
    conv = weight_norm(nn.Conv1d(in_channels, out_channels, k, stride, padding=k // 2, groups=groups)).double()
    with torch.no_grad():  # magnitudes unlike the direction's norms, so that the scale matters
        conv.parametrizations.weight.original0.uniform_(0.5, 2.0)
    return conv


@pytest.mark.parametrize("kernel, k, stride, groups", [("matmul", 5, 3, 1), ("winograd", 5, 1, 1), ("dft", 41, 4, 4)])
def test_weight_norm_factors_give_weight_norms_outputs_and_gradients(kernel, k, stride, groups):
    """A kernel computing with v and scaling its outputs by g / ||v|| equals the conv with the normalised
    weight, and the gradients reaching v, g, the bias and the input are weight norm's."""
    conv = _weight_normed_conv(4, 8, k, stride, groups)
    x = torch.randn(2, 4, 150, dtype=torch.float64, requires_grad=True)
    v, g = conv.parametrizations.weight.original1, conv.parametrizations.weight.original0

    def run(weight, scale):
        if kernel == "matmul":
            return matmul_conv1d(x, weight, conv.bias, stride=stride, padding=k // 2, scale=scale)
        basis = winograd_basis(k) if kernel == "winograd" else dft_basis(32, -(-k // stride))
        return block_conv1d(x, weight, conv.bias, basis, stride=stride, padding=k // 2, groups=groups, scale=scale)

    expected = conv(x)
    target = torch.randn_like(expected)
    wanted = torch.autograd.grad((expected * target).sum(), (v, g, conv.bias, x))
    got = run(*weight_norm_factors(conv))
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    for ours, theirs in zip(torch.autograd.grad((got * target).sum(), (v, g, conv.bias, x)), wanted):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)
    assert torch.autograd.gradcheck(lambda v, g: run(*_WeightNormFactors.apply(v, g)), (v.detach().requires_grad_(),
                                                                                      g.detach().requires_grad_()))


def test_weight_norm_factors_without_gradients_or_weight_norm():
    conv = _weight_normed_conv(4, 6, 3, 1)
    with torch.no_grad():
        v, scale = weight_norm_factors(conv)
    assert v._base is None and not v.requires_grad and v.data_ptr() == conv.parametrizations.weight.original1.data_ptr()
    torch.testing.assert_close(v * scale.view(-1, 1, 1), conv.weight.detach(), rtol=1e-12, atol=0)
    with torch.no_grad():
        conv.parametrizations.weight.original0[2] = 0.0
    assert weight_norm_factors(conv) is None  # g = 0: its gradient needs the normalised weight
    assert weight_norm_factors(nn.Conv1d(4, 6, 3)) is None
    assert weight_norm_factors(spectral_norm(nn.Conv1d(4, 6, 3))) is None


def test_discriminator_step_gradients_do_not_depend_on_the_fold():
    """The CPU kernels' weight-norm fold (fp32) gives the gradients the normalised weights give."""
    torch.manual_seed(5)
    mpd = MultiPeriodDiscriminator(channels=(8, 16, 32, 64))
    audio = torch.randn(2, 1, 3000)

    def gradients():
        mpd.zero_grad()
        sum(logits.square().sum() for logits, _ in mpd(audio)).backward()
        return [p.grad.clone() for p in mpd.parameters()]

    folded = gradients()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(discriminators, "weight_norm_factors", lambda conv: None)
        unfolded = gradients()
    for ours, theirs in zip(folded, unfolded):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4 * theirs.abs().max().item())


@pytest.mark.parametrize("kernel", ["matmul", "dft"])
def test_a_per_item_output_scale_gets_its_gradient(kernel):
    """scale (N, 1, 1) multiplies each item's outputs; its gradient, and the others', pass gradcheck."""
    torch.manual_seed(6)
    x = torch.randn(4, 4, 40, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(6, 2 if kernel == "dft" else 4, 5, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(6, dtype=torch.float64, requires_grad=True)
    scale = torch.rand(4, 1, 1, dtype=torch.float64).add(0.5).requires_grad_()

    def run(x, weight, bias, scale):
        if kernel == "matmul":
            return matmul_conv1d(x, weight, bias, stride=2, padding=2, scale=scale)
        return block_conv1d(x, weight, bias, dft_basis(16, 3), stride=2, padding=2, groups=2, scale=scale)

    expected = torch.nn.functional.conv1d(x, weight, bias, 2, 2, groups=2 if kernel == "dft" else 1)
    expected = (expected - bias.view(-1, 1)) * scale + bias.view(-1, 1)
    torch.testing.assert_close(run(x, weight, bias, scale), expected, rtol=1e-9, atol=1e-9)
    assert torch.autograd.gradcheck(run, (x, weight, bias, scale))


def test_spectral_scales_pass_gradcheck_and_match_the_division():
    conv = spectral_norm(nn.Conv1d(4, 6, 3)).double()
    weight = conv.parametrizations.weight.original
    u, v = conv.parametrizations.weight[0]._u.double(), conv.parametrizations.weight[0]._v.double()
    us, vs = torch.stack([u, 2 * u]), torch.stack([v, v])
    scales = _SpectralScales.apply(weight, us, vs)
    for scale, (u_i, v_i) in zip(scales, zip(us, vs)):
        divided = _SpectralDivision.apply(weight, u_i, v_i)
        torch.testing.assert_close(weight * scale, divided, rtol=1e-12, atol=0)
    assert torch.autograd.gradcheck(lambda w: _SpectralScales.apply(w, us, vs), (weight.detach().requires_grad_(),))


def test_parts_in_one_batch_give_the_gradients_of_parts_in_turn():
    """The spectral-normalised scale's parts in one batch (each conv scaled by each call's 1 / sigma)
    give the weight gradients and power-iteration state of calls in turn."""
    torch.manual_seed(7)
    together = MultiScaleDiscriminator(**TINY_MSD)
    in_turn = copy.deepcopy(together)
    audio = torch.randn(4, 1, 3000)
    assert together.discriminators[0].takes_parts_together(audio)

    def gradients(msd):
        msd.zero_grad()
        sum(logits.square().sum() + sum(m.abs().mean() for m in maps) for logits, maps in msd(audio, parts=2)).backward()
        return [p.grad.clone() for p in msd.parameters()]

    ours = gradients(together)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ScaleDiscriminator, "takes_parts_together", lambda self, audio: False)
        theirs = gradients(in_turn)
        with pytest.raises(ValueError, match="computes parts only in turn"):
            in_turn.discriminators[0](audio, parts=2)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * b.abs().max().item())
    for key, value in in_turn.state_dict().items():
        torch.testing.assert_close(together.state_dict()[key], value, rtol=1e-5, atol=1e-6)
    foreign = ScaleDiscriminator(channels=TINY_MSD["channels"], norm="none")  # torch's spectral norm: no scales
    torch.nn.utils.parametrizations.spectral_norm(foreign.convs[0])
    assert not foreign.takes_parts_together(audio) and not together.discriminators[0].takes_parts_together(audio.half())
