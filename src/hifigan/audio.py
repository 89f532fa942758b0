"""Waveform I/O and simple transforms. Audio is float32 in [-1, 1], shape (samples,)."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .errors import AudioFileError, InputError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
MEL_EXTENSIONS = (".npy", ".pt")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    A failed or interrupted write never leaves a half-written file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix + ".part", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _new_file_mode())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def find_files(folder: str | Path, extensions: tuple[str, ...]) -> list[Path]:
    """Every file below `folder` (recursively) whose suffix is in `extensions`, sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in extensions)


def mel_file_for(folder: str | Path, stem: str) -> Path | None:
    """`folder/<stem>.npy` or `.pt`, whichever exists first, else None."""
    return next((Path(folder) / f"{stem}{s}" for s in MEL_EXTENSIONS if (Path(folder) / f"{stem}{s}").is_file()), None)


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def load_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a wav/flac/ogg file as mono float32 (samples,) and its sample rate.

    Multi-channel audio is mixed down by averaging the channels.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"{path}: no such file")
    if path.suffix.lower() not in AUDIO_EXTENSIONS:
        raise AudioFileError(f"{path}: unsupported audio type {path.suffix!r}; use {', '.join(AUDIO_EXTENSIONS)}")
    return _decode_audio(str(path), str(path))


def decode_audio(data: bytes, name: str = "audio") -> tuple[np.ndarray, int]:
    """load_audio for the bytes of a wav/flac/ogg file; `name` labels errors."""
    return _decode_audio(io.BytesIO(data), name)


def _decode_audio(source: str | io.BytesIO, name: str) -> tuple[np.ndarray, int]:
    import soundfile

    try:
        audio, sample_rate = soundfile.read(source, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as err:
        raise AudioFileError(f"{name}: cannot read audio ({err})") from None
    if audio.shape[0] == 0:
        raise AudioFileError(f"{name}: the file holds no audio samples")
    bad = int(np.count_nonzero(~np.isfinite(audio)))  # only float files can hold them; they would poison a batch
    if bad:
        raise AudioFileError(f"{name}: the file holds {bad} NaN or infinite samples")
    return to_mono(audio.T), int(sample_rate)


def to_mono(audio: np.ndarray) -> np.ndarray:
    """(samples,) or (channels, samples) -> (samples,) float32, averaging the channels."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=0)
    if audio.ndim != 1:
        raise InputError(f"audio must be (samples,) or (channels, samples), got shape {audio.shape}")
    return audio


def resample(audio: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resample (samples,) float audio with soxr's high-quality filter; no-op at equal rates."""
    if orig_rate == target_rate:
        return audio
    import soxr

    return soxr.resample(audio, orig_rate, target_rate, quality="HQ").astype(np.float32)


def peak_normalize(audio: np.ndarray, peak: float = 0.95) -> np.ndarray:
    """Scale so that max |audio| == peak (the reference's training normalisation); silence stays silent."""
    current = float(np.max(np.abs(audio))) if audio.size else 0.0
    return audio if current == 0.0 else (audio * (peak / current)).astype(np.float32)


def to_int16(audio: np.ndarray) -> np.ndarray:
    """Float [-1, 1] -> int16, scaling by 32767 and clipping, so +1.0 never wraps to -32768."""
    scaled = np.round(np.clip(np.asarray(audio, dtype=np.float64), -1.0, 1.0) * 32767.0)
    return scaled.astype(np.int16)


def save_audio(path: str | Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write (samples,) float audio as 16-bit PCM, atomically (temp file, then rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        _write_pcm16(str(tmp), audio, sample_rate, _sf_format(path))


def encode_wav(audio: np.ndarray, sample_rate: int) -> bytes:
    """(samples,) float audio -> the bytes of a 16-bit PCM wav file."""
    buffer = io.BytesIO()
    _write_pcm16(buffer, audio, sample_rate, "WAV")
    return buffer.getvalue()


def _write_pcm16(target: str | io.BytesIO, audio: np.ndarray, sample_rate: int, file_format: str) -> None:
    import soundfile

    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise InputError(f"audio to write must be (samples,), got shape {audio.shape}")
    soundfile.write(target, to_int16(audio), sample_rate, subtype="PCM_16", format=file_format)


def _sf_format(path: Path) -> str:
    formats = {".wav": "WAV", ".flac": "FLAC"}
    if path.suffix.lower() not in formats:
        raise AudioFileError(f"{path}: cannot write audio of type {path.suffix!r}; use .wav or .flac")
    return formats[path.suffix.lower()]


def load_mel_file(path: str | Path) -> np.ndarray:
    """Read a (n_mels, T) or (1, n_mels, T) mel from .npy or .pt (tensor or {'mel': tensor})."""
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            mel = np.load(path, allow_pickle=False)
        elif suffix == ".pt":
            mel = torch.load(path, map_location="cpu", weights_only=True)
            mel = mel.get("mel") if isinstance(mel, dict) else mel
            mel = mel.float().numpy() if isinstance(mel, torch.Tensor) else mel
        else:
            raise AudioFileError(f"{path}: unsupported mel file type {suffix!r}; use .npy or .pt")
    except (OSError, ValueError, RuntimeError, EOFError) as err:
        raise AudioFileError(f"{path}: cannot read mel ({str(err).splitlines()[0][:160]})") from None
    if not isinstance(mel, np.ndarray):
        raise AudioFileError(f"{path}: holds {type(mel).__name__}, not a mel array")
    return mel[0] if mel.ndim == 3 and mel.shape[0] == 1 else mel
