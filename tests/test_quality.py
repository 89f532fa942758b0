"""Resynthesis quality with the original authors' V2 weights on real LJSpeech clips."""

import numpy as np
import torch

from conftest import LJ_V2, LJ_WAVS, needs_shared
from hifigan import Vocoder
from hifigan.audio import load_audio
from hifigan.checkpoint import build_generator

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
