"""Inference engines: every backend and precision against the eager fp32 generator, on tiny models."""

import dataclasses
import warnings

import pytest
import torch
from torch.nn import functional as F

from conftest import TINY, lively, random_mel
from hifigan import InputError, Vocoder
from hifigan.checkpoint import build_generator
from hifigan.config import GENERATOR_PRESETS, MelConfig, ModelConfig
from hifigan.device import cpu_bf16_slower_than_fp32, cpu_bf16_supported
from hifigan import fast as fast_module
from hifigan.fast import FFT_MIN_MACS, FastGenerator, WideConv, dft_blocks_pay_off, fft_block, onednn_available


def tiny(version: str):
    config = ModelConfig(mel=MelConfig(), generator=TINY[version])
    return lively(build_generator(config, weight_norm=False)).eval(), config


def eager(generator, mel, lengths=None):
    with torch.inference_mode():
        return generator(mel, lengths)


@pytest.mark.parametrize("version", ["v1", "v3"])
@pytest.mark.parametrize("fused,fft", [(True, False), (False, False), (False, True)])
def test_fast_generator_matches_eager_fp32(version, fused, fft):
    generator, _ = tiny(version)
    fast = FastGenerator(generator, fused=fused, fft_min_width=1 if fft else None, fft_min_macs=0)
    assert fast.conv_pre.fused == (fused and onednn_available())
    assert any(isinstance(conv, WideConv) for block in fast.blocks for conv in block) == fft
    chunked = FastGenerator(generator, fused=fused, fft_min_width=1 if fft else None, fft_min_macs=0)
    chunked.stage_chunk = 64  # every stage in chunks of 64 samples plus context
    for mel in (random_mel(1, batch=1), random_mel(37, batch=2, seed=1)):
        out = fast(mel)
        assert float((chunked(mel) - out).abs().max()) < 1e-5
        expected = eager(generator, mel)
        assert out.shape == expected.shape and out.dtype == torch.float32 and out.is_contiguous()
        assert float((out - expected).abs().max()) < 1e-4
        assert float(expected.abs().max()) > 0.05  # a lively model, so the comparison means something


@pytest.mark.parametrize("version", ["v1", "v3"])
@pytest.mark.parametrize("fft_min_width,stage_chunk", [(None, 8192), (1, 8192), (1, 100)])
def test_fast_generator_masks_padded_batches(version, fft_min_width, stage_chunk):
    generator, _ = tiny(version)
    fast = FastGenerator(generator, fft_min_width=fft_min_width, fft_min_macs=0)
    fast.stage_chunk = stage_chunk  # 100: every stage after the first runs in chunks
    short, long = random_mel(9, seed=2), random_mel(20, seed=3)
    batch = torch.full((2, 80, 20), -11.5)
    batch[0, :, :9], batch[1] = short, long
    out = fast(batch, torch.tensor([9, 20]))
    alone = eager(generator, short[None])
    assert float((out[0, :, : 9 * 256] - alone[0]).abs().max()) < 1e-4
    assert float((out - eager(generator, batch, torch.tensor([9, 20]))).abs().max()) < 1e-4


def test_fft_convolutions_only_where_they_were_measured_faster():
    assert fft_block(128, 11) == fft_block(64, 11) == fft_block(128, 7) == fft_block(256, 7) == 32
    assert fft_block(256, 3) is None and fft_block(64, 7) is None and fft_block(32, 11) is None
    assert fft_block(512, 11, min_width=None) is None
    generator, _ = tiny("v1")
    bf16 = FastGenerator(generator, dtype=torch.bfloat16, fft_min_width=1, fft_min_macs=0)
    assert not any(isinstance(conv, WideConv) for block in bf16.blocks for conv in block)


@pytest.mark.parametrize("pays_off", [True, False])
def test_default_uses_dft_blocks_only_where_the_cpu_probe_says_they_pay_off(monkeypatch, pays_off):
    asked = []
    monkeypatch.setattr(fast_module, "dft_blocks_pay_off", lambda threads: asked.append(threads) or pays_off)
    config = ModelConfig(mel=MelConfig(), generator=dataclasses.replace(TINY["v1"], upsample_initial_channel=128))
    wide = build_generator(config, weight_norm=False).eval()  # first stage: 64 channels, k = 11 (C * k = 704)
    fast = FastGenerator(wide)
    assert any(isinstance(conv, WideConv) for block in fast.blocks for conv in block) == pays_off
    assert asked == [torch.get_num_threads()]
    FastGenerator(tiny("v1")[0])  # nothing wide enough: no need to ask
    assert len(asked) == 1


def test_dft_probe_answers_once_per_thread_count_and_leaves_the_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    answer = dft_blocks_pay_off(torch.get_num_threads())
    assert isinstance(answer, bool) and torch.equal(torch.rand(3), expected)
    assert dft_blocks_pay_off(torch.get_num_threads()) is answer
    assert dft_blocks_pay_off.cache_info().hits >= 1


def test_wide_convs_use_dft_blocks_only_on_long_enough_calls():
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(64, 64, 11, dilation=3, padding=15)
    wide = WideConv(conv, block=32, min_macs=64 * 64 * 11 * 300, dtype=torch.float32, fused=False)
    short, long = (torch.randn(b, 64, 1, n).contiguous(memory_format=torch.channels_last)
                   for b, n in ((1, 299), (2, 150)))
    assert wide.path(short) is wide.direct and wide.path(long) is wide.spectral  # B * L steps decide
    for x in (short, long):
        with torch.no_grad():
            expected = F.conv1d(x.squeeze(2), conv.weight, conv.bias, padding=15, dilation=3)
        assert float((wide(x).squeeze(2) - expected).abs().max()) < 1e-4 * float(expected.abs().max())
    # The real V1 and V2 shapes at 128 frames: V1's 256-channel k = 11 convs (1024 steps) take
    # DFT blocks, V2's 64-channel ones (also 1024 steps) run directly.
    v1, v2 = (WideConv(torch.nn.Conv1d(c, c, 11, padding=5), block=32, min_macs=FFT_MIN_MACS,
                       dtype=torch.float32, fused=False) for c in (256, 64))
    x1, x2 = (torch.zeros(1, c, 1, 1024) for c in (256, 64))
    assert v1.path(x1) is v1.spectral and v2.path(x2) is v2.direct


def test_bf16_policy_keeps_the_edges_fp32_and_stays_close():
    generator, _ = tiny("v1")
    fast = FastGenerator(generator, dtype=torch.bfloat16, fused=False)
    last = fast.num_kernels * (len(fast.ups) - 1)  # the last stage's first residual block
    assert fast.conv_pre.dtype == fast.ups[0].dtype == fast.conv_post.dtype == torch.float32
    assert fast.ups[-1].dtype == fast.blocks[last][0].dtype == fast.blocks[-1][-1].dtype == torch.float32
    assert fast.ups[1].dtype == fast.blocks[0][0].dtype == fast.blocks[last - 1][-1].dtype == torch.bfloat16
    mel = random_mel(12, batch=1)
    out, expected = fast(mel), eager(generator, mel)
    assert out.dtype == torch.float32 and out.shape == expected.shape
    snr = 10 * torch.log10(expected.pow(2).sum() / (out - expected).pow(2).sum())
    everything_bf16 = eager(generator.to(torch.bfloat16), mel.bfloat16()).float()
    snr_all = 10 * torch.log10(expected.pow(2).sum() / (everything_bf16 - expected).pow(2).sum())
    assert 25 < snr < 80 and snr > snr_all  # rounded, but better than rounding everything


@pytest.mark.parametrize("preset,residuals,last_stage", [
    ("v1", ["bf16", "bf16", "bf16", "fp32"], "bf16"),  # widths 256, 128, 64, 32
    ("v2", ["fp32", "fp32", "fp32", "fp32"], "fp32"),  # widths 64, 32, 16, 8
    ("v3", ["fp32", "bf16", "fp32"], "bf16"),          # widths 128, 64, 32
])
def test_bf16_policy_by_stage_width(preset, residuals, last_stage):
    """Stages of 64+ channels (the first: 256+) but the last keep a bf16 residual stream; the last
    stage's convs are bf16 from 32 channels; the first and last upsampling convs stay fp32."""
    config = ModelConfig(mel=MelConfig(), generator=GENERATOR_PRESETS[preset])
    fast = FastGenerator(build_generator(config, weight_norm=False).eval(), dtype=torch.bfloat16)
    names = {torch.float32: "fp32", torch.bfloat16: "bf16"}
    assert [names[dtype] for dtype in fast.stage_dtypes] == residuals
    last = fast.num_kernels * (len(fast.ups) - 1)
    assert {names[conv.dtype] for block in fast.blocks[last:] for conv in block} == {last_stage}
    assert fast.ups[0].dtype == fast.ups[-1].dtype == fast.conv_pre.dtype == fast.conv_post.dtype == torch.float32
    # Fused oneDNN ops (where the CPU runs bf16) only in the stages with a bf16 residual stream.
    fused = FastGenerator(build_generator(config, weight_norm=False).eval(), dtype=torch.bfloat16, fused=True)
    native = cpu_bf16_supported() and onednn_available()
    for stage, residual in enumerate(residuals):
        blocks = fused.blocks[stage * fused.num_kernels:(stage + 1) * fused.num_kernels]
        expected = native and residual == "bf16"
        assert all(conv.fused == expected for block in blocks for conv in block)
        assert fused.ups[stage].fused == (expected and stage > 0)  # the first upsampling conv is fp32
    assert not fused.conv_pre.fused and not fused.conv_post.fused


@pytest.mark.parametrize("fused", [False, True])
def test_bf16_residual_stream_masks_padded_batches(fused, monkeypatch):
    """With V1's bf16 inner residual streams, a padded batch gives each item what it gives alone,
    also when the stages run in chunks."""
    torch.manual_seed(0)
    generator = lively(build_generator(ModelConfig(mel=MelConfig(), generator=GENERATOR_PRESETS["v1"]),
                                       weight_norm=False)).eval()
    fast = FastGenerator(generator, dtype=torch.bfloat16, fused=fused)
    assert torch.bfloat16 in fast.stage_dtypes
    short, long = random_mel(9, seed=2), random_mel(20, seed=3)
    batch = torch.full((2, 80, 20), 5.0)  # loud padding, so that a leak past the mask would show
    batch[0, :, :9], batch[1] = short, long
    out = fast(batch, torch.tensor([9, 20]))
    assert out.dtype == torch.float32

    def snr(expected, got):  # 35-37 dB here: bf16 rounding, which differs with the batch's shape
        return 10 * torch.log10(expected.pow(2).sum() / (got - expected).pow(2).sum())
    alone = fast(short[None])[0]
    assert snr(alone, out[0, :, : 9 * 256]) > 30 and snr(fast(long[None])[0], out[1]) > 30
    assert snr(alone[:, -512:], out[0, :, 9 * 256 - 512: 9 * 256]) > 30  # the two frames next to the padding
    fast.stage_chunk = 700  # stages 1-3 in chunks (fused: at least FUSED_MIN_CHUNK samples)
    monkeypatch.setattr(fast_module, "FUSED_MIN_CHUNK", 512)
    assert snr(out, fast(batch, torch.tensor([9, 20]))) > 30


@pytest.mark.parametrize("backend,tolerance", [("torch", 1e-4), ("eager", 0.0), ("compile", 1e-4),
                                               ("onnxruntime", 1e-4), ("openvino", 1e-4)])
def test_every_backend_in_fp32_matches_eager(backend, tolerance):
    if backend == "openvino":
        pytest.importorskip("openvino", reason="the openvino extra is not installed")
    generator, config = tiny("v1")
    mel = random_mel(15, batch=2)
    expected = eager(generator, mel)[:, 0]
    vocoder = Vocoder(generator, config, backend=backend, threads=2)
    audio = vocoder(mel)
    assert vocoder.describe()["backend"] == backend
    assert audio.shape == expected.shape == (2, 15 * 256)
    assert float((audio - expected).abs().max()) <= tolerance
    outputs = vocoder([mel[0, :, :6], mel[1]])  # a padded list
    assert float((outputs[1] - expected[1]).abs().max()) <= max(tolerance, 1e-5)


def test_bf16_uses_the_fast_path_only_where_the_cpu_has_it(monkeypatch):
    generator, config = tiny("v1")
    monkeypatch.setattr("hifigan.engines.cpu_bf16_slower_than_fp32", lambda: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vocoder = Vocoder(generator, config, precision="bf16")
    assert vocoder.precision == ("bf16" if cpu_bf16_supported() else "fp32")
    assert bool(caught) != cpu_bf16_supported()
    monkeypatch.setattr("hifigan.engines.cpu_bf16_supported", lambda: True)
    forced = Vocoder(generator, config, precision="bf16")  # as on an AMX machine
    assert forced.precision == "bf16" and forced.engine.blocks[0][0].dtype == torch.bfloat16
    # bf16 on CPU takes oneDNN's fused ops where the CPU runs them natively; fp32 does not.
    assert forced.engine.fused == (cpu_bf16_supported() and onednn_available())
    assert not Vocoder(generator, config).engine.fused
    assert forced(random_mel(4)).shape == (1, 4 * 256)


def test_bf16_on_a_cpu_where_it_is_slower_still_runs_bf16_and_says_so(monkeypatch):
    generator, config = tiny("v1")
    monkeypatch.setattr("hifigan.engines.cpu_bf16_supported", lambda: True)
    monkeypatch.setattr("hifigan.engines.cpu_bf16_slower_than_fp32", lambda: True)
    with pytest.warns(UserWarning, match="bf16 runs slower than fp32 on this CPU"):
        vocoder = Vocoder(generator, config, precision="bf16")
    assert vocoder.precision == "bf16" and vocoder.engine.blocks[0][0].dtype == torch.bfloat16


@pytest.mark.parametrize("vendor,flags,slower", [
    ("GenuineIntel", "avx512f avx512_bf16 avx512_fp16", True),             # AVX512-BF16, no AMX
    ("GenuineIntel", "avx512f avx512_bf16 amx_tile amx_bf16 amx_int8", False),  # AMX
    ("AuthenticAMD", "avx512f avx512_bf16", False),                         # Zen 4: bf16 is faster
    ("GenuineIntel", "avx2 fma", False),                                     # no bf16 at all
])
def test_which_cpus_run_bf16_slower_than_fp32(vendor, flags, slower):
    cpuinfo = f"processor\t: 0\nvendor_id\t: {vendor}\nflags\t\t: fpu sse {flags}\n"
    assert cpu_bf16_slower_than_fp32(cpuinfo) is slower


@pytest.mark.parametrize("kwargs,message", [
    ({"backend": "tensorrt"}, "unknown backend 'tensorrt'"),
    ({"precision": "int8"}, "unknown precision 'int8'"),
    ({"backend": "onnxruntime", "precision": "bf16"}, "onnxruntime backend runs fp32"),
    ({"threads": 0}, "threads must be a positive integer"),
])
def test_bad_engine_choices(kwargs, message):
    generator, config = tiny("v1")
    with pytest.raises(InputError, match=message):
        Vocoder(generator, config, **kwargs)
