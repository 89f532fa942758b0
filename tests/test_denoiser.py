import pytest
import torch

from conftest import TINY, lively, random_mel
from hifigan import InputError, Vocoder
from hifigan.checkpoint import build_generator
from hifigan.config import MelConfig, ModelConfig
from hifigan.denoiser import Denoiser


def tiny_vocoder(mel_config=MelConfig(), precision="fp32"):
    import dataclasses

    generator = dataclasses.replace(TINY["v1"], upsample_rates=(8, 8, 4, 2), upsample_kernel_sizes=(16, 16, 8, 4)) \
        if mel_config.hop_length == 512 else TINY["v1"]
    config = ModelConfig(mel=mel_config, generator=generator)
    return Vocoder(lively(build_generator(config, weight_norm=False), seed=1), config, precision=precision)


def bias_band_energy(audio, denoiser):
    """Energy of audio in the frequency bins where the bias spectrum is strongest."""
    spec = denoiser._stft(audio.reshape(1, -1)).abs()[0]
    top = torch.topk(denoiser.bias_spectrum, 8).indices
    return float((spec[top] ** 2).sum())


def test_reduces_the_bias_tone_of_a_zero_mel_output():
    vocoder = tiny_vocoder()
    zeros = torch.zeros(80, 100)
    plain = vocoder(zeros)[0]
    denoiser = Denoiser(vocoder.generator, n_mels=80)
    energies = [bias_band_energy(vocoder(zeros, denoise=s)[0], denoiser) for s in (0.0, 0.05, 0.2)]
    assert energies[0] > energies[1] > energies[2]
    assert torch.equal(vocoder(zeros, denoise=0.0)[0], plain)


def test_zero_strength_is_an_exact_no_op():
    vocoder = tiny_vocoder()
    mel = random_mel(20)
    assert torch.equal(vocoder(mel, denoise=0), vocoder(mel))
    audio = torch.randn(3000)
    assert vocoder.denoise(audio, 0.0) is audio


def test_shapes_and_other_mel_sizes():
    config = MelConfig(sample_rate=44100, n_fft=2048, win_length=2048, hop_length=512, n_mels=128, f_max=None)
    vocoder = tiny_vocoder(config)
    mel = random_mel(10, n_mels=128)
    out = vocoder(mel, denoise=0.1)
    assert out.shape == (1, 5120) and torch.isfinite(out).all()
    batch = [random_mel(7, n_mels=128), random_mel(12, n_mels=128).numpy()]
    lengths = [len(a) for a in vocoder(batch, denoise=0.02)]
    assert lengths == [7 * 512, 12 * 512]


def test_bf16_generator():
    vocoder = tiny_vocoder(precision="bf16")
    assert torch.isfinite(vocoder(random_mel(10), denoise=0.05)).all()


@pytest.mark.parametrize("strength", [-0.1, float("nan"), "strong"])
def test_bad_strength(strength):
    with pytest.raises(InputError, match="denoise strength must be a finite number >= 0"):
        tiny_vocoder()(random_mel(5), denoise=strength)
