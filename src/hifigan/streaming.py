"""Chunked (streaming) inference that matches whole-utterance output.

Each output sample depends on the mel frames within the generator's receptive field. Audio for
frame f is emitted once frames up to f + context have arrived; it is computed on a window with
`context` frames on each side, so the window's artificial edges never reach the emitted part
and the concatenated stream equals the whole-utterance output (to float rounding).
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Iterator, Sequence

import torch


def receptive_field_frames(*, resblock: str, upsample_rates: Sequence[int], upsample_kernel_sizes: Sequence[int],
                           resblock_kernel_sizes: Sequence[int],
                           resblock_dilation_sizes: Sequence[Sequence[int]], **_: object) -> int:
    """An upper bound, in mel frames, of how far one frame's influence reaches on either side."""
    radius = 3.0  # conv_pre: kernel 7
    scale = 1
    for rate, kernel in zip(upsample_rates, upsample_kernel_sizes):
        radius += math.ceil(kernel / rate) / scale  # transposed conv, in input samples of this stage
        scale *= rate
        block_radius = 0
        for size, dilations in zip(resblock_kernel_sizes, resblock_dilation_sizes):
            half = (size - 1) // 2
            per_dilation = [half * d + (half if resblock == "1" else 0) for d in dilations]
            block_radius = max(block_radius, sum(per_dilation))
        radius += block_radius / scale
    radius += 3 / scale  # conv_post: kernel 7
    return math.ceil(radius)


def stream_audio(generate: Callable[[torch.Tensor], torch.Tensor], chunks: Iterable[torch.Tensor], *,
                 context: int, hop_length: int) -> Iterator[torch.Tensor]:
    """(n_mels, t) chunks -> 1-D audio pieces; `generate` maps (1, n_mels, T) to (1, T * hop)."""
    buffer: torch.Tensor | None = None
    start = 0      # absolute frame index of buffer[:, 0]
    emitted = 0    # frames whose audio has been yielded
    total = 0
    for chunk in chunks:
        buffer = chunk if buffer is None else torch.cat([buffer, chunk], dim=-1)
        total += chunk.shape[-1]
        ready = total - context
        if ready > emitted:
            yield _window(generate, buffer, start, emitted, ready, context, hop_length)
            emitted = ready
            drop = max(0, emitted - context - start)
            buffer, start = buffer[:, drop:], start + drop
    if buffer is not None and total > emitted:
        yield _window(generate, buffer, start, emitted, total, context, hop_length)


def _window(generate, buffer: torch.Tensor, start: int, first: int, stop: int, context: int,
            hop_length: int) -> torch.Tensor:
    """Audio of frames [first, stop) computed with up to `context` frames on each side."""
    left = max(start, first - context)
    right = min(start + buffer.shape[-1], stop + context)
    audio = generate(buffer[None, :, left - start: right - start])[0]
    return audio[(first - left) * hop_length: (stop - left) * hop_length]
