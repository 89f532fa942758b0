"""One table: every inference path's speed against a plain eager reference generator, and its accuracy.

python benchmarks/inference.py [--model lj-v1] [--frames 128 693] [--threads 2] [--repeats 5]
    [--clips 3] [--seconds 4] [--no-memory] [--json FILE]

Speed: each path (backend x precision) runs on the same random log-mel in this process, the
paths taking turns call by call; "x ref" is its median throughput over that of the plain eager
fp32 reference generator (benchmarks/reference_generator.py), which takes its turns with them.
Accuracy (real weights only): on the first --clips LJSpeech clips of ../shared (cut to
--seconds), SNR of each path's audio against our fp32 eager audio, and the mel L1 of its audio
against the input mel, beside fp32's. A path is fit to be a default at SNR >= 30 dB and mel L1
within 0.005 of fp32. Where the CPU lacks bf16, our bf16 policy's accuracy is measured with
torch's emulated bf16 ("emulated": too slow to time, so no speed).
Memory: peak resident memory of `hifigan bench` for the path in its own process, per input size.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from reference_generator import reference_from  # noqa: E402

from hifigan import Vocoder  # noqa: E402
from hifigan.audio import load_audio  # noqa: E402
from hifigan.bench import load_bench_vocoder  # noqa: E402
from hifigan.device import cpu_bf16_supported  # noqa: E402
from hifigan.fast import FastGenerator, dft_blocks_pay_off  # noqa: E402

PATHS = [("eager", "fp32"), ("torch", "fp32"), ("compile", "fp32"), ("onnxruntime", "fp32"),
         ("openvino", "fp32"), ("torch", "bf16"), ("openvino", "bf16")]
CLIPS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ljspeech" / "wavs"


def snr_db(reference: torch.Tensor, other: torch.Tensor) -> float:
    return float(10 * torch.log10(reference.pow(2).sum() / (reference - other).pow(2).sum().clamp_min(1e-20)))


def build_path(base: Vocoder, backend: str, precision: str, threads: int):
    """A Vocoder for the path, or None where this machine cannot run it natively."""
    if precision == "bf16" and not cpu_bf16_supported():
        return None
    if backend == "openvino":
        try:
            import openvino  # noqa: F401
        except ImportError:
            return None
    return Vocoder(base.generator, base.config, backend=backend, precision=precision, threads=threads)


def time_paths(base: Vocoder, vocoders: dict, frames: list[int], repeats: int) -> dict:
    """{(label, frames): median seconds per call}. Paths take turns call by call, the reference
    among them, so drifts in the machine's speed (10-30% here) hit every path alike."""
    reference = reference_from(base.generator, dataclasses.asdict(base.config.generator))
    runs = {"reference": reference} | {label: run for label, run in vocoders.items() if run is not None}
    seconds = {}
    for n in frames:
        mel = torch.randn(1, base.n_mels, n, generator=torch.Generator().manual_seed(n)) * 2 - 5
        times = {label: [] for label in runs}
        with torch.inference_mode():
            for run in runs.values():
                run(mel)  # warm-up
            for _ in range(repeats):
                for label, run in runs.items():
                    start = time.perf_counter()
                    run(mel)
                    times[label].append(time.perf_counter() - start)
        seconds |= {(label, n): statistics.median(t) for label, t in times.items()}
        print(f"timed {n} frames: " + ", ".join(f"{label} {1e3 * seconds[label, n]:.0f} ms" for label in runs),
              file=sys.stderr)
    return seconds


def accuracy(base: Vocoder, vocoders: dict, clips: int, seconds: float) -> dict:
    """{label: (mean SNR vs fp32 eager, mean mel L1)} over real clips; fp32 eager gives (inf, its L1)."""
    files = sorted(CLIPS.glob("*.wav"))[:clips]
    runs = {label: v for label, v in vocoders.items() if v is not None}
    if not any(getattr(p, "precision", None) == "bf16" for p in runs.values()):
        emulated = FastGenerator(base.generator, dtype=torch.bfloat16, fused=False)
        runs["torch bf16 (emulated)"] = lambda mel: emulated(mel)[:, 0]
    scores = {label: ([], []) for label in runs}
    for path in files:
        audio, rate = load_audio(path)
        mel = torch.as_tensor(base.mel_spectrogram(audio[: int(seconds * rate)], rate))[None]
        expected = base(mel)
        for label, run in runs.items():
            with torch.inference_mode():
                out = run(mel)
            scores[label][0].append(snr_db(expected, out))
            scores[label][1].append(float((base.mel_spectrogram(out) - mel).abs().mean()))
        print(f"scored {path.name}", file=sys.stderr)
    return {label: (statistics.mean(s), statistics.mean(l1)) for label, (s, l1) in scores.items()}


def peak_memory(model: str, backend: str, precision: str, threads: int, frames: int) -> float | None:
    """Peak RSS (MB) of `hifigan bench` for one path in a fresh process."""
    command = [sys.executable, "-m", "hifigan", "bench", "--model", model, "--backend", backend, "--precision",
               precision, "--threads", str(threads), "--frames", str(frames), "--repeats", "2", "--warmup", "1",
               "--json"]
    done = subprocess.run(command, capture_output=True, text=True)
    return json.loads(done.stdout)["peak_memory_mb"] if done.returncode == 0 else None


def fit_for_default(snr: float, l1: float, fp32_l1: float) -> bool:
    return snr >= 30 and l1 - fp32_l1 <= 0.005


def rows(labels: list[str], seconds: dict, scores: dict, memory: dict, frames: list[int], hop: int) -> list[dict]:
    fp32_l1 = scores.get("eager fp32", (None, None))[1]
    table = []
    for label in ["reference"] + labels:
        row = {"path": label + (" (plain eager fp32 baseline)" if label == "reference" else "")}
        for n in frames:
            if (label, n) in seconds:
                row[f"{n} frames ms"] = 1e3 * seconds[label, n]
                row[f"{n} frames samples/s"] = n * hop / seconds[label, n]
                row[f"{n} frames x ref"] = seconds["reference", n] / seconds[label, n]
        if label in scores:
            snr, l1 = scores[label]
            row.update({"SNR dB vs fp32": snr, "mel L1": l1, "default-fit": fit_for_default(snr, l1, fp32_l1)})
        for n in frames:
            if memory.get((label, n)) is not None:
                row[f"{n} frames peak MB"] = memory[label, n]
        table.append(row)
    return table


def markdown(table: list[dict]) -> str:
    columns = list(dict.fromkeys(key for row in table for key in row))
    def cell(column, value):
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, float) and column.startswith("SNR") and value > 150:
            return "exact"
        if isinstance(value, float):
            return f"{value:,.0f}" if value >= 1000 else f"{value:.3g}" if column != "mel L1" else f"{value:.4f}"
        return "-" if value is None else str(value)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(c, row.get(c)) for c in columns) + " |" for row in table]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lj-v1", help="registered name, checkpoint, or v1/v2/v3 (random weights)")
    parser.add_argument("--frames", type=int, nargs="+", default=[128, 693])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = load_bench_vocoder(args.model, backend="eager", threads=args.threads)
    vocoders = {f"{b} {p}": build_path(base, b, p, args.threads) for b, p in PATHS}
    fused = FastGenerator(base.generator, fused=True)  # the opt-in variant, for its speed/memory trade
    vocoders["torch fp32 fused oneDNN ops"] = lambda mel: fused(mel)[:, 0]
    seconds = time_paths(base, vocoders, args.frames, args.repeats)
    real = args.model not in ("v1", "v2", "v3") and CLIPS.is_dir()
    scores = accuracy(base, vocoders, args.clips, args.seconds) if real else {}
    memory = {} if args.no_memory else {
        (f"{b} {p}", n): peak_memory(args.model, b, p, args.threads, n)
        for b, p in PATHS if vocoders[f"{b} {p}"] is not None for n in args.frames}
    labels = [label for label in vocoders if vocoders[label] is not None] + [s for s in scores if s not in vocoders]
    table = rows(labels, seconds, scores, memory, args.frames, base.hop_length)
    print(f"{args.model}, {args.threads} thread(s), torch {torch.__version__}, CPU bf16: {cpu_bf16_supported()}, "
          f"fp32 DFT-block convs pay off: {dft_blocks_pay_off(args.threads)}")
    print(markdown(table))
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
