"""Pictures of mel spectrograms (matplotlib, an optional extra; no global backend is set)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .audio import atomic_path
from .errors import HifiganError


def _figure_class():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise HifiganError("plotting needs matplotlib: pip install 'hifigan[plot]'") from None
    return Figure, FigureCanvasAgg


def plot_mel_comparison(reference: np.ndarray, generated: np.ndarray, path: str | Path, *,
                        title: str = "", hop_seconds: float | None = None) -> None:
    """Save a PNG with the reference mel, the generated mel (n_mels, T) and their difference."""
    figure_cls, canvas_cls = _figure_class()
    frames = min(reference.shape[-1], generated.shape[-1])
    reference, generated = reference[:, :frames], generated[:, :frames]
    extent = None if hop_seconds is None else (0, frames * hop_seconds, 0, reference.shape[0])
    figure = figure_cls(figsize=(10, 7.5), layout="constrained")
    canvas_cls(figure)
    axes = figure.subplots(3, 1, sharex=True)
    low, high = float(min(reference.min(), generated.min())), float(max(reference.max(), generated.max()))
    panels = (("input (reference) log-mel", reference, "magma", (low, high)),
              ("resynthesised log-mel", generated, "magma", (low, high)),
              (f"difference (mean |diff| = {np.abs(generated - reference).mean():.3f})",
               generated - reference, "coolwarm", (-3.0, 3.0)))
    for axis, (label, data, cmap, (vmin, vmax)) in zip(axes, panels):
        image = axis.imshow(data, origin="lower", aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax, extent=extent)
        axis.set_title(label, fontsize=10)
        axis.set_ylabel("mel band")
        figure.colorbar(image, ax=axis)
    axes[-1].set_xlabel("time (s)" if hop_seconds else "frame")
    if title:
        figure.suptitle(title)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)


def plot_metric_bars(means: dict[str, dict[str, float | None]], labels: dict[str, str], path: str | Path) -> None:
    """A bar chart per metric (one bar per model) of mean scores; missing values are left out."""
    import math

    figure_cls, canvas_cls = _figure_class()
    keys = [key for key in labels if any(m.get(key) is not None and math.isfinite(m[key]) for m in means.values())]
    columns = 3
    rows = max(1, math.ceil(len(keys) / columns))
    figure = figure_cls(figsize=(4 * columns, 2.8 * rows), layout="constrained")
    canvas_cls(figure)
    axes = figure.subplots(rows, columns, squeeze=False).flatten()
    models = list(means)
    for axis, key in zip(axes, keys):
        values = [means[m].get(key) for m in models]
        shown = [(m, v) for m, v in zip(models, values) if v is not None and math.isfinite(v)]
        axis.bar(range(len(shown)), [v for _, v in shown], color=[f"C{models.index(m)}" for m, _ in shown])
        axis.set_xticks(range(len(shown)), [m for m, _ in shown], rotation=20, fontsize=8)
        axis.set_title(labels[key], fontsize=9)
    for axis in axes[len(keys):]:
        axis.set_visible(False)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
