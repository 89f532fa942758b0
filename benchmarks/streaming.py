"""Time to first audio and total time of `Vocoder.stream` against whole-utterance inference.

python benchmarks/streaming.py [--model universal-v1] [--wav FILE] [--chunks 1 7 32 100] [--threads 2]
Without --wav it uses 6 s of a synthetic harmonic signal. Prints one table; not part of the tests.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from hifigan import Vocoder
from hifigan.audio import load_audio


def synthetic(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(140 + 30 * np.sin(2 * np.pi * 0.7 * t)) / rate
    return (0.3 * sum(np.sin(k * phase) / k for k in range(1, 15))).astype(np.float32)


def timed_stream(vocoder: Vocoder, mel: torch.Tensor, chunk: int) -> tuple[float, float, float]:
    """(time to first audio, total time, max |stream - whole|)."""
    pieces, first = [], None
    start = time.perf_counter()
    for piece in vocoder.stream(mel.split(chunk, dim=-1)):
        first = first if first is not None else time.perf_counter() - start
        pieces.append(piece)
    total = time.perf_counter() - start
    return first, total, torch.cat(pieces)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="universal-v1")
    parser.add_argument("--wav")
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 7, 32, 100])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    vocoder = Vocoder.from_pretrained(args.model)
    audio, rate = load_audio(args.wav) if args.wav else (synthetic(6.0, vocoder.sample_rate), vocoder.sample_rate)
    mel = torch.as_tensor(vocoder.mel_spectrogram(audio, rate))
    seconds = mel.shape[-1] * vocoder.hop_length / vocoder.sample_rate
    vocoder(mel[:, :50])  # warm-up
    start = time.perf_counter()
    whole = vocoder(mel)[0]
    whole_time = time.perf_counter() - start
    print(f"model {args.model}, {mel.shape[-1]} frames ({seconds:.2f} s of audio), {args.threads} threads, "
          f"latency {vocoder.stream_latency_frames} frames "
          f"({vocoder.stream_latency_frames * vocoder.hop_length / vocoder.sample_rate * 1000:.0f} ms)")
    print(f"{'chunk (frames)':>14} {'first audio (s)':>16} {'total (s)':>10} {'total / whole':>14} {'max diff':>10}")
    print(f"{'whole':>14} {whole_time:16.3f} {whole_time:10.3f} {1.0:14.2f} {0.0:10.1e}")
    for chunk in args.chunks:
        first, total, streamed = timed_stream(vocoder, mel, chunk)
        diff = float((streamed - whole).abs().max())
        print(f"{chunk:>14} {first:16.3f} {total:10.3f} {total / whole_time:14.2f} {diff:10.1e}")


if __name__ == "__main__":
    main()
