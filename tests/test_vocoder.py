import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from conftest import TINY_V1, lively, random_mel
from hifigan import InputError, Vocoder
from hifigan.checkpoint import build_generator
from hifigan.config import MelConfig, ModelConfig


def tiny_vocoder(precision="fp32"):
    config = ModelConfig(mel=MelConfig(), generator=TINY_V1)
    return Vocoder(lively(build_generator(config, weight_norm=False)), config, precision=precision)


@pytest.fixture(scope="module")
def vocoder():
    return tiny_vocoder()


def test_properties(vocoder):
    assert (vocoder.sample_rate, vocoder.hop_length, vocoder.n_mels) == (22050, 256, 80)


def test_shapes_and_types(vocoder):
    mel = random_mel(10)
    audio = vocoder(mel)
    assert isinstance(audio, torch.Tensor) and audio.shape == (1, 2560) and audio.dtype == torch.float32
    batch = vocoder(mel.expand(3, 80, 10).numpy())
    assert isinstance(batch, np.ndarray) and batch.shape == (3, 2560)
    assert np.allclose(batch[2], audio[0].numpy(), atol=1e-5)
    assert torch.equal(vocoder.convert_spectrogram_to_audio(spec=mel[None]), audio)
    assert float(audio.abs().max()) <= 1.0


def test_list_of_different_lengths_is_padded_and_trimmed(vocoder):
    mels = [random_mel(5, seed=1), random_mel(23, seed=2), random_mel(11, seed=3).numpy()]
    outputs = vocoder(mels)
    assert [len(a) for a in outputs] == [5 * 256, 23 * 256, 11 * 256]
    assert isinstance(outputs[2], np.ndarray) and isinstance(outputs[0], torch.Tensor)
    for mel, audio in zip(mels, outputs):
        alone = vocoder(mel)[0]
        assert np.allclose(np.asarray(audio), np.asarray(alone), atol=1e-5)


@pytest.mark.parametrize("bad,message", [
    (torch.zeros(60, 10), "mel has 60 channels but this model takes 80"),
    (torch.zeros(10, 80), "transposed"),
    (torch.zeros(80), "must be \\(n_mels, frames\\)"),
    (torch.zeros(1, 1, 80, 10), "must be \\(n_mels, frames\\)"),
    (torch.zeros(80, 0), "no frames"),
    (torch.full((80, 10), float("nan")), "800 NaN or infinite"),
    (torch.tensor([[float("inf")] * 4] * 80), "NaN or infinite"),
    ("not a mel", "torch.Tensor or numpy array"),
    (torch.zeros(80, 4, dtype=torch.complex64), "real numbers"),
])
def test_bad_mels(vocoder, bad, message):
    with pytest.raises(InputError, match=message):
        vocoder(bad)


def test_mel_and_resynthesis(vocoder, speechlike):
    mel = vocoder.mel_spectrogram(speechlike)
    assert mel.shape == (80, len(speechlike) // 256)
    audio = vocoder.resynthesize(speechlike, 22050)
    assert isinstance(audio, np.ndarray) and audio.shape == (len(speechlike) // 256 * 256,)


def test_resynthesis_resamples_other_rates(vocoder, speechlike):
    import soxr

    at_16k = soxr.resample(speechlike, 22050, 16000)
    audio = vocoder.resynthesize(at_16k, 16000)
    assert abs(len(audio) - len(speechlike)) <= 256 + 2
    direct = vocoder.mel_spectrogram(at_16k, 16000)
    assert direct.shape[0] == 80 and abs(direct.shape[1] - len(speechlike) // 256) <= 1


def test_stereo_is_mixed_down_and_silence_is_fine(vocoder, speechlike):
    stereo = np.stack([speechlike, speechlike])
    assert np.allclose(vocoder.resynthesize(stereo, 22050), vocoder.resynthesize(speechlike, 22050), atol=1e-6)
    silent = vocoder.resynthesize(np.zeros(22050, dtype=np.float32), 22050)
    assert np.isfinite(silent).all() and silent.shape == (22050 // 256 * 256,)


def test_integer_pcm_is_scaled_and_loud_float_audio_warned(vocoder, speechlike):
    pcm16 = np.round(speechlike * 32767).astype(np.int16)
    assert np.array_equal(vocoder.mel_spectrogram(pcm16), vocoder.mel_spectrogram(pcm16.astype(np.float32) / 32768))
    pcm8 = (np.round(speechlike * 127) + 128).astype(np.uint8)
    expected = vocoder.mel_spectrogram((pcm8.astype(np.float32) - 128) / 128)
    assert np.array_equal(vocoder.mel_spectrogram(torch.from_numpy(pcm8)).numpy(), expected)
    assert vocoder.resynthesize(pcm16, 22050).shape == (len(speechlike) // 256 * 256,)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vocoder.mel_spectrogram(speechlike / np.abs(speechlike).max())  # peak 1.0: fine
    with pytest.warns(UserWarning, match=r"audio peaks at 3, outside \[-1, 1\]"):
        vocoder.mel_spectrogram(3 * speechlike / np.abs(speechlike).max())


@pytest.mark.parametrize("bad,message", [
    (np.zeros(0, dtype=np.float32), "non-empty"),
    (np.zeros((2, 3, 4), dtype=np.float32), "non-empty"),
    (np.full(4096, np.nan, dtype=np.float32), "NaN"),
    (np.zeros(100, dtype=np.float32), "too short"),
])
def test_bad_audio(vocoder, bad, message):
    with pytest.raises(InputError, match=message):
        vocoder.resynthesize(bad, 22050)


def test_bad_sample_rate(vocoder, speechlike):
    with pytest.raises(InputError, match="sample_rate must be a positive integer"):
        vocoder.resynthesize(speechlike, 0)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_without_cpu_support_falls_back_to_fp32(vocoder, precision, monkeypatch):
    monkeypatch.setattr("hifigan.engines.cpu_bf16_supported", lambda: False)
    with pytest.warns(UserWarning, match=f"precision '{precision}' requested but .*running fp32 instead"):
        low = tiny_vocoder(precision)
    assert low.precision == "fp32" and low.describe()["precision"] == "fp32"
    mel = random_mel(8)
    assert torch.allclose(low(mel), vocoder(mel), atol=1e-5)


def test_unknown_precision(vocoder):
    with pytest.raises(InputError, match="unknown precision 'int8'"):
        Vocoder(vocoder.generator, vocoder.config, precision="int8")


def test_long_lists_are_split_into_bounded_batches(vocoder, monkeypatch):
    sizes = []
    original = Vocoder._generate

    def spy(self, batch, lengths=None):
        sizes.append(tuple(batch.shape))
        return original(self, batch, lengths)

    monkeypatch.setattr(Vocoder, "_generate", spy)
    monkeypatch.setattr(vocoder, "max_batch_frames", 40)
    mels = [random_mel(n, seed=n) for n in (30, 4, 12, 9, 5)]
    outputs = vocoder(mels)
    assert [len(a) for a in outputs] == [n * 256 for n in (30, 4, 12, 9, 5)]
    assert all(b * t <= 40 or b == 1 for b, _, t in sizes)
    assert sorted(b for b, _, _ in sizes) == [1, 1, 3]  # (4, 5, 9), (12), (30)
    for mel, audio in zip(mels, outputs):
        assert torch.allclose(audio, vocoder(mel)[0], atol=1e-5)
    assert vocoder([]) == []


@pytest.mark.parametrize("device,message", [("cuda:7" if torch.cuda.is_available() else "cuda", "cuda"),
                                            ("gpu0", "unknown device 'gpu0'")])
def test_unavailable_or_unknown_device(vocoder, device, message):
    with pytest.raises(InputError, match=message):
        Vocoder(vocoder.generator, vocoder.config, device=device)


def test_vocoding_mels_never_loads_the_mel_front_end():
    """librosa's filterbank pulls in numba (about 1 s and 127 MB); only audio -> mel needs it."""
    script = """
import dataclasses, sys, torch
from hifigan import Vocoder
from hifigan.checkpoint import build_generator
from hifigan.config import V1, MelConfig, ModelConfig
config = ModelConfig(mel=MelConfig(), generator=dataclasses.replace(V1, upsample_initial_channel=16))
vocoder = Vocoder(build_generator(config, weight_norm=False), config)
vocoder(torch.zeros(1, 80, 4))
print("numba" in sys.modules)
vocoder.mel_spectrogram(torch.zeros(1024))
print("numba" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]
