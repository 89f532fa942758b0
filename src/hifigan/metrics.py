"""Objective vocoder metrics: reference audio vs generated audio of the same utterance.

All functions take 1-D float arrays at one sample rate, trim both to the shorter length (a
vocoder returns frames * hop samples), and return a float, or None when the clip is too short
for that metric. `compare` computes them all; METRICS says which direction is better.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Callable

import numpy as np
import torch

from .audio import resample
from .config import MelConfig
from .mel import MelSpectrogram


@dataclasses.dataclass(frozen=True)
class MetricInfo:
    label: str
    unit: str
    higher_is_better: bool


METRICS: dict[str, MetricInfo] = {
    "mel_l1": MetricInfo("mel L1 (model mel)", "", False),
    "mel_l1_full": MetricInfo("mel L1 (full band)", "", False),
    "mrstft": MetricInfo("MR-STFT distance", "", False),
    "mcd": MetricInfo("MCD", "dB", False),
    "pesq": MetricInfo("PESQ (wb)", "", True),
    "stoi": MetricInfo("STOI", "", True),
    "f0_rmse": MetricInfo("F0 RMSE", "cents", False),
    "vuv_f1": MetricInfo("V/UV F1", "", True),
    "periodicity": MetricInfo("periodicity RMSE", "", False),
}
SNR = MetricInfo("SNR", "dB", True)
# (n_fft, hop, window) of the multi-resolution STFT distance (ParallelWaveGAN's resolutions).
STFT_RESOLUTIONS = ((512, 50, 240), (1024, 120, 600), (2048, 240, 1200))
MCD_ORDER = 24
MCD_SCALE = 10.0 * math.sqrt(2.0) / math.log(10.0)
PITCH_RANGE = (50.0, 600.0)  # Hz, speech
STOI_MIN_SECONDS = 30 * 256 / 10000  # STOI analyses 30 frames of 256 samples at 10 kHz


def _aligned(reference: np.ndarray, generated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = min(len(reference), len(generated))
    return np.asarray(reference[:n], dtype=np.float32), np.asarray(generated[:n], dtype=np.float32)


def mel_l1(reference: np.ndarray, generated: np.ndarray, mel: MelSpectrogram) -> float | None:
    """Mean |log-mel(reference) - log-mel(generated)| with the given front end."""
    reference, generated = _aligned(reference, generated)
    if len(reference) < mel.n_fft:
        return None
    with torch.no_grad():
        both = mel(torch.from_numpy(np.stack([reference, generated])))
    return float((both[0] - both[1]).abs().mean())


def mrstft_distance(reference: np.ndarray, generated: np.ndarray) -> float | None:
    """Mean over STFT_RESOLUTIONS of spectral convergence + mean |log magnitude difference|."""
    reference, generated = _aligned(reference, generated)
    if len(reference) < max(n_fft for n_fft, _, _ in STFT_RESOLUTIONS):
        return None
    total = 0.0
    for n_fft, hop, window in STFT_RESOLUTIONS:
        ref, gen = (torch.stft(torch.from_numpy(x), n_fft, hop, window, torch.hann_window(window),
                               return_complex=True).abs().clamp(min=1e-7) for x in (reference, generated))
        convergence = torch.linalg.norm(ref - gen) / torch.linalg.norm(ref)
        total += float(convergence + (ref.log() - gen.log()).abs().mean())
    return total / len(STFT_RESOLUTIONS)


def mel_cepstrum(audio: np.ndarray, sample_rate: int, order: int = MCD_ORDER) -> np.ndarray:
    """(frames, order) mel-cepstral coefficients c_1..c_order of the natural-log mel amplitude A (N bands):

    c_k = (1/N) sum_n ln A_n cos(pi k (n + 1/2) / N), the cepstrum of the log envelope taken as an even
    function (an unnormalised DCT-II divided by 2N), so MCD has the scale of the usual mel-cepstra.
    """
    import librosa
    import scipy.fft

    mel = librosa.feature.melspectrogram(y=audio, sr=sample_rate, n_fft=1024, hop_length=256, n_mels=80, power=1.0)
    cepstrum = scipy.fft.dct(np.log(np.maximum(mel, 1e-5)), type=2, axis=0) / (2 * mel.shape[0])
    return cepstrum[1: order + 1].T


def mcd(reference: np.ndarray, generated: np.ndarray, sample_rate: int) -> float | None:
    """Mel-cepstral distortion in dB: 10 sqrt(2) / ln 10 * mean over frames of ||c_ref - c_gen||."""
    reference, generated = _aligned(reference, generated)
    if len(reference) < 1024:
        return None
    diff = mel_cepstrum(reference, sample_rate) - mel_cepstrum(generated, sample_rate)
    return float(MCD_SCALE * np.sqrt((diff ** 2).sum(axis=1)).mean())


def pesq_wb(reference: np.ndarray, generated: np.ndarray, sample_rate: int) -> float | None:
    """Wideband PESQ at 16 kHz (the `pesq` package); None for clips under a quarter second."""
    from pesq import pesq
    from pesq.cypesq import PesqError

    reference, generated = (resample(x, sample_rate, 16000) for x in _aligned(reference, generated))
    try:
        return float(pesq(16000, reference, generated, "wb"))
    except PesqError:  # too short, or no speech found
        return None


def stoi(reference: np.ndarray, generated: np.ndarray, sample_rate: int) -> float | None:
    """Short-time objective intelligibility (the `pystoi` package); None when too short."""
    from pystoi import stoi as pystoi

    reference, generated = _aligned(reference, generated)
    if len(reference) < STOI_MIN_SECONDS * sample_rate:
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = pystoi(reference, generated, sample_rate, extended=False)
        except (ValueError, IndexError):  # nothing left after pystoi drops the silent frames
            return None
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        return None
    return float(value)


def pitch(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """librosa pYIN: (f0 Hz with NaN where unvoiced, voiced flags, voiced probability) per 256-sample hop."""
    import librosa

    if len(audio) < 2048:
        return None
    return librosa.pyin(audio, fmin=PITCH_RANGE[0], fmax=PITCH_RANGE[1], sr=sample_rate, frame_length=1024,
                        hop_length=256)


def pitch_metrics(reference: np.ndarray, generated: np.ndarray, sample_rate: int,
                  reference_pitch=None) -> dict[str, float | None]:
    """F0 RMSE in cents (frames voiced in both), V/UV F1 (reference as truth), RMSE of voicing probability."""
    reference, generated = _aligned(reference, generated)
    ref = reference_pitch or pitch(reference, sample_rate)
    gen = pitch(generated, sample_rate)
    if ref is None or gen is None:
        return {"f0_rmse": None, "vuv_f1": None, "periodicity": None}
    n = min(len(ref[0]), len(gen[0]))
    (ref_f0, ref_voiced, ref_prob), (gen_f0, gen_voiced, gen_prob) = ([a[:n] for a in x] for x in (ref, gen))
    both = ref_voiced & gen_voiced
    cents = 1200 * np.log2(gen_f0[both] / ref_f0[both])
    true_pos = float((ref_voiced & gen_voiced).sum())
    denominator = float(ref_voiced.sum() + gen_voiced.sum())
    return {"f0_rmse": float(np.sqrt(np.mean(cents ** 2))) if both.any() else None,
            "vuv_f1": 2 * true_pos / denominator if denominator else None,
            "periodicity": float(np.sqrt(np.mean((ref_prob - gen_prob) ** 2)))}


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    """10 log10(sum ref^2 / sum (ref - other)^2); +inf for identical signals."""
    reference, other = (x.astype(np.float64) for x in _aligned(reference, other))
    noise = float(((reference - other) ** 2).sum())
    return math.inf if noise == 0 else 10 * math.log10(float((reference ** 2).sum()) / noise)


def compare(reference: np.ndarray, generated: np.ndarray, sample_rate: int, *, mel: MelConfig | None = None,
            reference_pitch=None) -> dict[str, float | None]:
    """Every metric in METRICS for one clip; `mel` is the model's mel config (default: 22.05 kHz reference)."""
    mel = mel or MelConfig(sample_rate=sample_rate)
    settings = dataclasses.asdict(mel)
    model_mel = MelSpectrogram(**settings)
    full_mel = MelSpectrogram(**{**settings, "f_max": None})
    results: dict[str, float | None] = {
        "mel_l1": mel_l1(reference, generated, model_mel),
        "mel_l1_full": mel_l1(reference, generated, full_mel),
        "mrstft": mrstft_distance(reference, generated),
        "mcd": mcd(reference, generated, sample_rate),
        "pesq": pesq_wb(reference, generated, sample_rate),
        "stoi": stoi(reference, generated, sample_rate),
    }
    results.update(pitch_metrics(reference, generated, sample_rate, reference_pitch))
    return results


def mean_of(values: list[float | None]) -> float | None:
    """Mean of the values that exist (None when none do)."""
    present = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(present)) if present else None


def better(name: str) -> Callable[[float, float], bool]:
    """better(name)(a, b) is True when a is a better score than b for metric `name`."""
    info = METRICS.get(name, SNR)
    return (lambda a, b: a > b) if info.higher_is_better else (lambda a, b: a < b)
