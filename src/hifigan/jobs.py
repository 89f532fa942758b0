"""File-level jobs behind the CLI: many inputs, one bad file never stops the others."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from .audio import AUDIO_EXTENSIONS, MEL_EXTENSIONS, find_files, load_audio, load_mel_file, save_audio
from .denoiser import check_strength
from .errors import AudioFileError, HifiganError, InputError
from .vocoder import Vocoder



@dataclasses.dataclass
class JobReport:
    """What a job did: files written and one-line errors for the inputs that failed."""

    written: list[Path] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)


def collect_files(paths: Iterable[str | Path], extensions: tuple[str, ...],
                  report: JobReport) -> list[tuple[Path, Path]]:
    """(file, path relative to the folder it was found in): files as given, folders searched
    recursively for `extensions`; an empty folder is reported."""
    found: list[tuple[Path, Path]] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():  # a file, or a missing path that the caller will report
            found.append((path, Path(path.name)))
            continue
        files = find_files(path, extensions)
        if not files:
            report.errors.append(f"{path}: folder holds no {'/'.join(extensions)} files")
        found.extend((p, p.relative_to(path)) for p in files)
    return found


def expand_inputs(paths: Iterable[str | Path], extensions: tuple[str, ...], outdir: Path,
                  report: JobReport) -> list[tuple[Path, Path]]:
    """(input, output wav) pairs; two inputs that would write the same output are refused."""
    pairs: dict[Path, Path] = {}
    for source, relative in collect_files(paths, extensions, report):
        target = outdir / relative.with_suffix(".wav")
        if target in pairs and pairs[target] != source:
            raise InputError(f"{pairs[target]} and {source} would both write {target}; process them separately")
        pairs[target] = source
    return [(source, target) for target, source in pairs.items()]


def run_each(pairs: list[tuple[Path, Path]], work: Callable[[Path, Path], None], report: JobReport,
             description: str) -> JobReport:
    """Apply `work(input, output)` to each pair with a progress bar; collect one-line errors."""
    from tqdm import tqdm

    for source, target in tqdm(pairs, desc=description, unit="file", disable=len(pairs) < 2):
        try:
            work(source, target)
            report.written.append(target)
        except HifiganError as err:
            report.errors.append(str(err) if str(source) in str(err) else f"{source}: {err}")
    return report


def resynthesize_files(vocoder: Vocoder, inputs: Iterable[str | Path], outdir: str | Path, *,
                       plot: bool = False, denoise: float = 0.0) -> JobReport:
    """Audio files or folders -> OUTDIR/<name>.wav (and <name>.png mel comparisons with plot)."""
    report = JobReport()
    pairs = expand_inputs(inputs, AUDIO_EXTENSIONS, Path(outdir), report)

    def work(source: Path, target: Path) -> None:
        audio, sample_rate = load_audio(source)
        try:
            generated = vocoder.resynthesize(audio, sample_rate, denoise=denoise)
        except InputError as err:
            raise AudioFileError(f"{source}: {err}") from None
        if plot:
            from .plots import plot_mel_comparison

            plot_mel_comparison(vocoder.mel_spectrogram(audio, sample_rate), vocoder.mel_spectrogram(generated),
                                target.with_suffix(".png"), title=source.name,
                                hop_seconds=vocoder.hop_length / vocoder.sample_rate)
        save_audio(target, generated, vocoder.sample_rate)

    return run_each(pairs, work, report, "resynthesising")


def vocode_files(vocoder: Vocoder, inputs: Iterable[str | Path], outdir: str | Path, *, denoise: float = 0.0,
                 stream_chunk: int | None = None) -> JobReport:
    """Mel files (.npy/.pt) or folders of them -> OUTDIR/<name>.wav (optionally vocoded as a stream)."""
    check_strength(denoise)
    if stream_chunk is not None and stream_chunk < 1:
        raise InputError(f"--stream-chunk must be a positive number of frames, got {stream_chunk}")
    report = JobReport()
    pairs = expand_inputs(inputs, MEL_EXTENSIONS, Path(outdir), report)

    def work(source: Path, target: Path) -> None:
        mel = load_mel_file(source)
        if mel.ndim != 2:
            raise InputError(f"{source}: mel must be (n_mels, frames) or (1, n_mels, frames), got shape {mel.shape}")
        if stream_chunk:
            chunks = [mel[:, i: i + stream_chunk] for i in range(0, mel.shape[-1], stream_chunk)]
            audio = vocoder.denoise(torch.from_numpy(np.concatenate(list(vocoder.stream(chunks)))), denoise)
            save_audio(target, audio.numpy(), vocoder.sample_rate)
        else:
            save_audio(target, vocoder(mel, denoise=denoise)[0], vocoder.sample_rate)

    return run_each(pairs, work, report, "vocoding")
