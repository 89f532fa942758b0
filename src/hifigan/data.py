"""Training data: file lists, seeded random crops, fine-tuning (mel, audio) pairs, collate.

Crops are drawn from a generator seeded by (seed, epoch, index), so an interrupted run that
resumes sees exactly the batches it would have seen. A bad file (unreadable, too short, more
than two channels, silent, NaN or infinite samples or mel values, mel and audio lengths that
disagree) is logged and skipped: its item comes back as None and `collate` drops it.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .audio import AUDIO_EXTENSIONS, find_files, load_audio, load_mel_file, mel_file_for, peak_normalize, resample
from .errors import HifiganError, InputError
from .mel import SILENCE_LOG_MEL

log = logging.getLogger(__name__)
MISSING_NAMED = 5  # audio files without a mel named one by one; the rest are counted
MEL_FRAMINGS = ("reference", "center")


@dataclasses.dataclass(frozen=True)
class Example:
    audio: Path
    mel: Path | None = None  # a precomputed (n_mels, T) mel for fine-tuning


def audio_files(root: str | Path) -> list[Path]:
    """Every wav/flac/ogg below `root`, sorted; an error when there are none."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such data folder")
    files = find_files(root, AUDIO_EXTENSIONS)
    if not files:
        raise InputError(f"{root}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this folder or below")
    return files


def read_filelist(path: str | Path, root: str | Path) -> list[Path]:
    """Audio paths from a filelist (`path_or_id|text...` lines), relative to `root`.

    Ids without an extension (the LJSpeech lists) resolve to `root/wavs/ID.wav`, else `root/ID.wav`.
    """
    root, entries = Path(root), []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise InputError(f"{path}: cannot read the filelist ({err.strerror})") from None
    for line in filter(None, (line.split("|")[0].strip() for line in lines)):
        candidate = root / line
        if not candidate.suffix:
            nested = root / "wavs" / f"{line}.wav"
            candidate = nested if nested.exists() or (root / "wavs").is_dir() else root / f"{line}.wav"
        entries.append(candidate)
    return entries


def split_files(files: Sequence[Path], validation_fraction: float = 0.02, seed: int = 1234) -> tuple[list, list]:
    """A seeded train/validation split (at least one validation file when there are two or more)."""
    shuffled = list(files)
    random.Random(seed).shuffle(shuffled)
    count = max(1, round(len(shuffled) * validation_fraction)) if len(shuffled) > 1 else 0
    return sorted(shuffled[count:]), sorted(shuffled[:count])


def pair_with_mels(files: Sequence[Path], mel_dir: str | Path, *, required: bool = True) -> list[Example]:
    """Examples whose `<stem>.npy`/`.pt` mel exists in mel_dir; missing mels are logged (the first few by
    name, then a count) and skipped. With `required`, no mel for any file is an error: a wrong folder
    or naming."""
    mel_dir = Path(mel_dir)
    if not mel_dir.is_dir():
        raise InputError(f"{mel_dir}: no such mel folder")
    examples, missing = [], []
    for audio in files:
        mel = mel_file_for(mel_dir, audio.stem)
        if mel is None:
            missing.append(audio)
        else:
            examples.append(Example(audio, mel))
    if required and files and not examples:
        raise InputError(f"{mel_dir}: no mel matches any of the {len(files)} audio files (looked for <stem>.npy or "
                         f".pt, e.g. {files[0].stem}.npy)")
    for audio in missing[:MISSING_NAMED]:
        log.warning("%s: no mel %s.npy/.pt in %s; skipped", audio, audio.stem, mel_dir)
    if len(missing) > MISSING_NAMED:
        log.warning("... and %d more audio files without a mel in %s; skipped", len(missing) - MISSING_NAMED, mel_dir)
    return examples


class SegmentDataset(Dataset):
    """Items {"audio": (S,), "mel": (n_mels, S // hop) or None, "name"}.

    training=True: random crops of `segment_size` samples (zero-padded when shorter; mels padded
    with silence). training=False: whole utterances trimmed to whole frames.
    """

    def __init__(self, examples: Sequence[Example], *, sample_rate: int, hop_length: int, n_mels: int,
                 segment_size: int = 8192, training: bool = True, mel_framing: str = "reference",
                 seed: int = 1234) -> None:
        if mel_framing not in MEL_FRAMINGS:
            raise InputError(f"mel framing must be one of {', '.join(MEL_FRAMINGS)}, got {mel_framing!r}")
        if segment_size % hop_length:
            raise InputError(f"segment_size {segment_size} is not a multiple of the hop length {hop_length}")
        self.examples = list(examples)
        self.sample_rate, self.hop_length, self.n_mels = sample_rate, hop_length, n_mels
        self.segment_size, self.training, self.mel_framing, self.seed = segment_size, training, mel_framing, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, key: int | tuple[int, int]) -> dict | None:
        """key: an index, or (epoch, index). The epoch seeds the crop: the trainer passes pairs, as its
        loader's persistent workers hold their own copy of the dataset and never see set_epoch."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        example = self.examples[index]
        try:
            audio, mel = self._load(example)
            if self.training:
                rng = np.random.default_rng((self.seed, epoch, index))
                audio, mel = self._crop(audio, mel, rng)
        except HifiganError as err:
            log.warning("skipped %s", err if str(example.audio) in str(err) else f"{example.audio}: {err}")
            return None
        return {"audio": torch.from_numpy(audio), "mel": None if mel is None else torch.from_numpy(mel),
                "name": example.audio.stem}

    def _load(self, example: Example) -> tuple[np.ndarray, np.ndarray | None]:
        import soundfile

        audio, rate = load_audio(example.audio)  # validates the file first
        if soundfile.info(str(example.audio)).channels > 2:
            raise InputError(f"{example.audio}: more than two channels")
        audio = resample(audio, rate, self.sample_rate)
        if len(audio) < self.hop_length * 2:
            raise InputError(f"{example.audio}: too short ({len(audio)} samples)")
        if not np.any(audio):
            raise InputError(f"{example.audio}: silent")
        if example.mel is None:
            audio = peak_normalize(audio, 0.95)  # the reference's training normalisation
            if not self.training:  # validation: the whole utterance in whole frames
                audio = audio[: len(audio) // self.hop_length * self.hop_length]
            return audio, None
        return self._aligned_pair(example, audio)

    def _aligned_pair(self, example: Example, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mel = load_mel_file(example.mel).astype(np.float32)
        if mel.ndim != 2 or mel.shape[0] != self.n_mels:
            raise InputError(f"{example.mel}: mel must be ({self.n_mels}, frames), got shape {mel.shape}")
        bad = int(np.count_nonzero(~np.isfinite(mel)))
        if bad:
            raise InputError(f"{example.mel}: holds {bad} NaN or infinite values")
        if self.mel_framing == "center":  # centre-framed frame f is centred on sample f*hop: shift by hop/2
            audio = np.pad(audio, (self.hop_length // 2, 0))
        audio_frames = len(audio) // self.hop_length
        if abs(mel.shape[1] - audio_frames) > 1:
            raise InputError(f"{example.mel}: {mel.shape[1]} mel frames but {audio_frames} frames of audio "
                             f"({example.audio.name}); wrong hop length or mel framing?")
        frames = min(mel.shape[1], audio_frames)
        return audio[: frames * self.hop_length], mel[:, :frames]

    def _crop(self, audio: np.ndarray, mel: np.ndarray | None, rng: np.random.Generator):
        """A random crop of segment_size samples, zero-padded when shorter. Audio alone starts
        anywhere, as in the reference (its mel is computed from the crop); with a mel the start is
        a frame boundary, so frame f <-> samples f*hop .. (f+1)*hop stay aligned."""
        unit = 1 if mel is None else self.hop_length
        span, available = self.segment_size // unit, len(audio) // unit
        start = int(rng.integers(0, available - span + 1)) if available > span else 0
        audio = audio[start * unit: (start + span) * unit]
        if mel is not None:
            mel = mel[:, start: start + span]
            mel = np.pad(mel, ((0, 0), (0, span - mel.shape[1])), constant_values=SILENCE_LOG_MEL)
        return np.pad(audio, (0, self.segment_size - len(audio))), mel


def collate(items: list[dict | None]) -> dict | None:
    """Stack the items that loaded; None when none did."""
    items = [item for item in items if item is not None]
    if not items:
        return None
    mels = [item["mel"] for item in items]
    return {"audio": torch.stack([item["audio"] for item in items]),
            "mel": None if any(m is None for m in mels) else torch.stack(mels),
            "names": [item["name"] for item in items]}
