import numpy as np
import pytest
import torch

from conftest import LJ_WAVS, needs_shared
from hifigan.audio import load_audio
from hifigan.errors import InputError
from hifigan.mel import SILENCE_LOG_MEL, MelSpectrogram


def reference_log_mel(audio, sr=22050, n_fft=1024, hop=256, win=1024, n_mels=80, fmin=0.0, fmax=8000.0):
    """A direct NumPy/librosa computation of the reference definition (float64)."""
    import librosa

    pad = (n_fft - hop) // 2
    padded = np.pad(audio.astype(np.float64), (pad, pad), mode="reflect")
    spec = librosa.stft(padded, n_fft=n_fft, hop_length=hop, win_length=win, window="hann", center=False)
    magnitude = np.sqrt(spec.real ** 2 + spec.imag ** 2 + 1e-9)
    basis = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    return np.log(np.clip(basis @ magnitude, 1e-5, None))


def assert_matches_reference(ours: np.ndarray, reference: np.ndarray):
    assert ours.shape == reference.shape
    difference = np.abs(ours - reference)
    assert difference.mean() < 1e-5, difference.mean()
    assert difference.max() < 2e-3, difference.max()


def test_matches_numpy_librosa_on_synthetic(speechlike):
    ours = MelSpectrogram()(torch.from_numpy(speechlike)).numpy()
    assert_matches_reference(ours, reference_log_mel(speechlike))


@needs_shared(LJ_WAVS)
def test_matches_numpy_librosa_on_real_ljspeech():
    for path in sorted(LJ_WAVS.glob("*.wav"))[:3]:
        audio, rate = load_audio(path)
        assert rate == 22050
        assert_matches_reference(MelSpectrogram()(torch.from_numpy(audio)).numpy(), reference_log_mel(audio))


@pytest.mark.parametrize("samples", [385, 512, 1000, 8192, 22050, 22050 + 255])
def test_frames_are_floor_of_samples_over_hop(samples):
    mel = MelSpectrogram()
    assert mel(torch.zeros(samples) + 0.1).shape == (80, samples // 256)
    assert mel.num_frames(samples) == samples // 256


def test_other_sample_rate_settings(speechlike):
    settings = dict(sample_rate=44100, n_fft=2048, win_length=2048, hop_length=512, n_mels=128, f_min=0.0, f_max=None)
    ours = MelSpectrogram(**settings)(torch.from_numpy(speechlike)).numpy()
    reference = reference_log_mel(speechlike, sr=44100, n_fft=2048, hop=512, win=2048, n_mels=128, fmax=None)
    assert_matches_reference(ours, reference)


def test_window_shorter_than_fft(speechlike):
    ours = MelSpectrogram(win_length=800, n_fft=1024)(torch.from_numpy(speechlike)).numpy()
    assert_matches_reference(ours, reference_log_mel(speechlike, win=800))


def test_silence_is_the_log_floor():
    mel = MelSpectrogram()(torch.zeros(4096))
    assert torch.allclose(mel, torch.full_like(mel, SILENCE_LOG_MEL))


def test_batch_equals_single(speechlike):
    mel = MelSpectrogram()
    audio = torch.from_numpy(speechlike)
    batch = mel(torch.stack([audio, audio * 0.5]))
    assert batch.shape == (2, 80, audio.numel() // 256)
    assert torch.allclose(batch[1], mel(audio * 0.5), atol=1e-6)


def test_too_short_or_wrong_rank():
    with pytest.raises(InputError, match="too short"):
        MelSpectrogram()(torch.zeros(100))
    with pytest.raises(InputError, match="samples"):
        MelSpectrogram()(torch.zeros(1, 1, 4096))


def test_filterbank_and_window_follow_device():
    mel = MelSpectrogram().to(torch.float64)
    assert mel.filterbank.dtype == torch.float64
    assert set(dict(mel.named_buffers())) == {"filterbank", "window"}
