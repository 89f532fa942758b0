"""`hifigan bench`: latency, throughput, real-time factor and memory of one inference path.

Timing: `warmup` untimed calls (first-call packing, compilation, allocator growth), then
`repeats` timed calls of the Vocoder on the same (batch, n_mels, frames) mel, synchronising the
GPU after each. Percentiles are empirical (nearest rank). The real-time factor follows NVIDIA
DeepLearningExamples: seconds of audio produced per second of compute (higher is faster).
Memory: on CUDA, torch's peak allocation; on CPU, the process's peak resident set size sampled
during the timed calls, and its growth over the resident size before them.
"""

from __future__ import annotations

import dataclasses
import math
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import torch

from .checkpoint import build_generator
from .config import ModelConfig, model_preset
from .errors import InputError
from .vocoder import Vocoder

PRESET_MODELS = ("v1", "v2", "v3")


@dataclasses.dataclass
class BenchResult:
    model: str
    backend: str
    precision: str  # what ran (a requested bf16 may have fallen back to fp32)
    requested_precision: str
    device: str
    threads: int
    batch: int
    frames: int
    sample_rate: int
    audio_seconds_per_call: float
    warmup: int
    repeats: int
    latency_mean_ms: float
    latency_p50_ms: float
    latency_p90_ms: float
    latency_p99_ms: float
    samples_per_second: float
    real_time_factor: float
    peak_memory_mb: float
    memory_growth_mb: float


def load_bench_vocoder(model: str, *, device: str = "cpu", precision: str = "fp32", backend: str = "torch",
                       threads: int | None = None) -> Vocoder:
    """A preset name (v1/v2/v3: seeded random weights, no download) or any from_pretrained source."""
    if model not in PRESET_MODELS:
        return Vocoder.from_pretrained(model, device=device, precision=precision, backend=backend, threads=threads)
    torch.manual_seed(0)
    config: ModelConfig = model_preset(model)
    generator = build_generator(config, weight_norm=False)
    return Vocoder(generator, config, device=device, precision=precision, backend=backend, threads=threads)


def percentile(values: list[float], q: float) -> float:
    """Empirical percentile: the smallest value with at least q% of the values at or below it."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class _PeakRss:
    """Samples this process's resident set size in a thread while active (Linux /proc; else ru_maxrss)."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval, self._stop = interval, threading.Event()
        self.start_rss = self.peak = _rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, _rss_bytes())

    def __enter__(self) -> "_PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def _rss_bytes() -> int:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * resource.getpagesize()
    except (OSError, IndexError, ValueError):
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(run: Callable[[torch.Tensor], object], mel: torch.Tensor, *, device: torch.device, warmup: int,
               repeats: int) -> tuple[list[float], float, float]:
    """Seconds of each timed run(mel), peak memory (bytes) and memory growth (bytes) during them."""
    for _ in range(warmup):
        run(mel)
    _synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    times = []
    with _PeakRss() as rss:
        for _ in range(repeats):
            start = time.perf_counter()
            run(mel)
            _synchronize(device)
            times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        return times, peak, peak - base
    return times, rss.peak, rss.peak - rss.start_rss


def bench(vocoder: Vocoder, *, model: str, frames: int = 693, batch: int = 1, warmup: int = 2, repeats: int = 10,
          requested_precision: str | None = None, threads: int | None = None) -> BenchResult:
    """Time `repeats` calls of `vocoder` on a (batch, n_mels, frames) log-mel."""
    for name, value in (("frames", frames), ("batch", batch), ("repeats", repeats)):
        if value < 1:
            raise InputError(f"{name} must be a positive integer, got {value}")
    if warmup < 0:
        raise InputError(f"warmup must be 0 or more, got {warmup}")
    generator = torch.Generator().manual_seed(0)
    mel = (torch.randn(batch, vocoder.n_mels, frames, generator=generator) * 2 - 5).to(vocoder.device)
    times, peak, growth = time_calls(vocoder, mel, device=vocoder.device, warmup=warmup, repeats=repeats)
    mean = sum(times) / len(times)
    samples = batch * frames * vocoder.hop_length
    return BenchResult(
        model=model, backend=vocoder.backend, precision=vocoder.precision,
        requested_precision=requested_precision or vocoder.precision, device=str(vocoder.device),
        threads=threads or torch.get_num_threads(), batch=batch, frames=frames, sample_rate=vocoder.sample_rate,
        audio_seconds_per_call=samples / vocoder.sample_rate, warmup=warmup, repeats=repeats,
        latency_mean_ms=1e3 * mean, latency_p50_ms=1e3 * percentile(times, 50),
        latency_p90_ms=1e3 * percentile(times, 90), latency_p99_ms=1e3 * percentile(times, 99),
        samples_per_second=samples / mean, real_time_factor=samples / vocoder.sample_rate / mean,
        peak_memory_mb=peak / 2**20, memory_growth_mb=growth / 2**20)


def format_result(result: BenchResult) -> str:
    """A few human-readable lines."""
    r = result
    precision = r.precision if r.precision == r.requested_precision else f"{r.precision} (asked {r.requested_precision})"
    return "\n".join([
        f"{r.model} | backend {r.backend} | {precision} | {r.device}, {r.threads} thread(s) | "
        f"batch {r.batch} x {r.frames} frames ({r.audio_seconds_per_call:.2f} s of audio per call)",
        f"latency ms: mean {r.latency_mean_ms:.1f}  p50 {r.latency_p50_ms:.1f}  p90 {r.latency_p90_ms:.1f}  "
        f"p99 {r.latency_p99_ms:.1f}  ({r.repeats} timed calls after {r.warmup} warm-up)",
        f"throughput {r.samples_per_second:,.0f} samples/s | real-time factor {r.real_time_factor:.2f}x "
        f"(audio s per compute s) | peak memory {r.peak_memory_mb:.0f} MB (+{r.memory_growth_mb:.0f} MB during calls)",
    ])
