"""`hifigan eval`: vocode reference clips with one or more models and report objective metrics.

Writes report.json, report.md, summary.png and, per model and clip, a PNG of the reference
mel, the generated mel and their difference. With several models, each model after the first
also gets its SNR against the first model's output of the same input.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .audio import AUDIO_EXTENSIONS, atomic_path, load_audio, load_mel_file, mel_file_for, resample
from .errors import HifiganError
from .jobs import JobReport, collect_files
from .metrics import METRICS, SNR, compare, mean_of, pitch, snr_db
from .vocoder import Vocoder

SNR_KEY = "snr_vs_first"


@dataclasses.dataclass
class Clip:
    name: str
    audio: np.ndarray
    sample_rate: int
    held_out: bool


@dataclasses.dataclass
class Evaluation:
    models: list[str]
    clips: dict[str, dict[str, dict[str, float | None]]]  # clip -> model -> metric -> value
    held_out: list[str]
    errors: list[str]

    def means(self, model: str, only: Iterable[str] | None = None) -> dict[str, float | None]:
        names = list(self.clips) if only is None else [c for c in only if c in self.clips]
        keys = [*METRICS, *([SNR_KEY] if self.models.index(model) > 0 else [])]
        return {key: mean_of([self.clips[c].get(model, {}).get(key) for c in names]) for key in keys}


def read_id_list(path: str | Path) -> set[str]:
    """Utterance ids from a filelist (first `|` field of each line, e.g. the official split lists)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise HifiganError(f"{path}: cannot read the id list ({err.strerror})") from None
    return {Path(line.split("|")[0].strip()).stem for line in lines if line.strip()}


def _load_clips(inputs: Sequence[str | Path], held_out_ids: set[str], report: JobReport) -> list[Clip]:
    clips = []
    for path, _ in collect_files(inputs, AUDIO_EXTENSIONS, report):
        try:
            audio, rate = load_audio(path)
        except HifiganError as err:
            report.errors.append(str(err))
            continue
        clips.append(Clip(path.stem, audio, rate, path.stem in held_out_ids))
    return clips


def _generate(vocoder: Vocoder, clip: Clip, reference: np.ndarray, mels_dir: Path | None) -> np.ndarray:
    if mels_dir is None:
        return vocoder.resynthesize(reference, vocoder.sample_rate)
    mel_path = mel_file_for(mels_dir, clip.name) or mels_dir / f"{clip.name}.npy"  # missing: reported by the loader
    return vocoder(load_mel_file(mel_path))[0]


def evaluate(models: Sequence[str], inputs: Sequence[str | Path], *, mels_dir: str | Path | None = None,
             report_dir: str | Path | None = None, held_out_ids: set[str] | None = None,
             device: str = "cpu") -> Evaluation:
    """Vocode every clip with every model, compute the metrics and (with report_dir) write the report."""
    from tqdm import tqdm

    report = JobReport()
    clips = _load_clips(inputs, held_out_ids or set(), report)
    results: dict[str, dict[str, dict]] = {clip.name: {} for clip in clips}
    first_outputs: dict[str, np.ndarray] = {}
    pitch_cache: dict[tuple[str, int], object] = {}
    for index, model in enumerate(models):
        vocoder = Vocoder.from_pretrained(model, device=device)
        rate = vocoder.sample_rate
        for clip in tqdm(clips, desc=f"evaluating {model}", unit="clip", disable=len(clips) < 2):
            reference = resample(clip.audio, clip.sample_rate, rate)
            try:
                generated = _generate(vocoder, clip, reference, Path(mels_dir) if mels_dir else None)
            except HifiganError as err:
                report.errors.append(f"{clip.name} ({model}): {err}")
                continue
            if (clip.name, rate) not in pitch_cache:
                pitch_cache[clip.name, rate] = pitch(reference, rate)
            scores = compare(reference, generated, rate, mel=vocoder.config.mel,
                             reference_pitch=pitch_cache[clip.name, rate])
            if index == 0:
                first_outputs[clip.name] = generated
            elif clip.name in first_outputs:
                scores[SNR_KEY] = snr_db(first_outputs[clip.name], generated)
            results[clip.name][model] = scores
            if report_dir:
                _plot_clip(vocoder, reference, generated, Path(report_dir) / "mels" / _slug(model) / f"{clip.name}.png")
    evaluation = Evaluation(list(models), results, [c.name for c in clips if c.held_out], report.errors)
    if report_dir:
        write_report(evaluation, Path(report_dir))
    return evaluation


def display_name(model: str) -> str:
    """A registered name as is; a checkpoint path by its file name."""
    return Path(model).name if Path(model).exists() else model


def _slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", display_name(model))


def _plot_clip(vocoder: Vocoder, reference: np.ndarray, generated: np.ndarray, path: Path) -> None:
    from .plots import plot_mel_comparison

    plot_mel_comparison(vocoder.mel_spectrogram(reference), vocoder.mel_spectrogram(generated), path,
                        title=path.stem, hop_seconds=vocoder.hop_length / vocoder.sample_rate)


def _strict_json(value):
    """Replace infinities (identical signals have infinite SNR) by the strings "inf"/"-inf"."""
    if isinstance(value, dict):
        return {key: _strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else "-inf"
    return value


def _columns(evaluation: Evaluation) -> list[tuple[str, str]]:
    columns = [(key, f"{info.label}{' (' + info.unit + ')' if info.unit else ''} {'↑' if info.higher_is_better else '↓'}")
               for key, info in METRICS.items()]
    if len(evaluation.models) > 1:
        columns.append((SNR_KEY, f"SNR vs {display_name(evaluation.models[0])} (dB) ↑"))
    return columns


def markdown_table(evaluation: Evaluation) -> str:
    """Mean of every metric per model (and per model on the held-out clips, when marked)."""
    columns = _columns(evaluation)
    lines = ["| model | clips | " + " | ".join(label for _, label in columns) + " |",
             "|---|---:|" + "---:|" * len(columns)]
    subsets = [("all", None)] + ([("held-out", evaluation.held_out)] if evaluation.held_out else [])
    for subset, only in subsets:
        count = len(evaluation.clips) if only is None else len(only)
        for model in evaluation.models:
            means = evaluation.means(model, only)
            cells = ["-" if means.get(key) is None else f"{means[key]:.3f}" for key, _ in columns]
            label = display_name(model) + ("" if subset == "all" else " (held-out)")
            lines.append(f"| {label} | {count} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(evaluation: Evaluation, report_dir: Path) -> None:
    from .plots import plot_metric_bars

    report_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "models": evaluation.models,
        "metrics": {key: dataclasses.asdict(info) for key, info in {**METRICS, SNR_KEY: SNR}.items()},
        "held_out": evaluation.held_out,
        "mean": {model: evaluation.means(model) for model in evaluation.models},
        "mean_held_out": {model: evaluation.means(model, evaluation.held_out) for model in evaluation.models}
        if evaluation.held_out else {},
        "clips": evaluation.clips,
        "errors": evaluation.errors,
    }
    with atomic_path(report_dir / "report.json") as tmp:
        tmp.write_text(json.dumps(_strict_json(data), indent=2, allow_nan=False) + "\n")
    with atomic_path(report_dir / "report.md") as tmp:
        tmp.write_text(markdown_table(evaluation))
    plot_metric_bars({display_name(model): evaluation.means(model) for model in evaluation.models},
                     {key: label for key, label in _columns(evaluation)}, report_dir / "summary.png")
