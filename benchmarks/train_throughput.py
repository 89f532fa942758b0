"""Training throughput: mel frames per second of one full step (generator + both discriminators).

python benchmarks/train_throughput.py [--presets v1 v3] [--batch 4] [--segment 8192] [--precisions fp32 bf16]
    [--steps 3] [--rounds 3] [--warmup 2] [--threads 2]

Compares hifigan's Trainer.train_step with the original train.py's step written plainly
(reference_training.py: its own copies of the models, the discriminators from
reference_discriminators.py with the same weights, each discriminator run separately on real and
generated audio with full graphs in both the discriminator and the generator step, and the
reference's feature-matching loss, whose backward also runs through the discriminators on the
real audio); same batch and precision. After one untimed step each and `warmup` untimed rounds
of one step each, the two take turns, `steps` timed steps each per round; the table gives the
median over rounds. The warm-up lets the heap settle: it grows over the first steps, faulting in
new pages (hifigan's v1 fp32 step alone, batch 4: 0.88, 0.25, 0.02, 0.40, 0.12 s of kernel time
in its second to sixth steps, about none after).

It also counts each step's floating-point operations (torch's FlopCounterMode, one untimed step)
and prints the rate each path reaches beside the rate of one large fp32 matrix product on the
same CPU, which is about the most any convolution can reach there: together they bound the
speed-up that faster kernels alone could still bring.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_training import ReferenceStep  # noqa: E402

from hifigan.config import TrainConfig, model_preset  # noqa: E402
from hifigan.hostmemory import tune_heap_for_training  # noqa: E402
from hifigan.train.trainer import Trainer  # noqa: E402


def timed(step, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    """Each gradient of a convolution (input, weight) costs what its forward does.

    Replaces torch's formula (2.13), which counts a grouped conv's weight gradient as if the conv
    were dense: `groups` times too many (the MSD's k = 41 layers have 4 and 16 groups)."""
    forward = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


def step_flops(step) -> float:
    """Floating-point operations of one call of `step` (matmuls, convs and their gradients)."""
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flops}) as counter:
        step()
    return counter.get_total_flops()


def matmul_rate(size: int = 2048, repeats: int = 5) -> float:
    """Best FLOP/s of a (size x size) @ (size x size) fp32 matrix product."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(timed(lambda: a @ b, 1) for _ in range(repeats))
    return 2 * size ** 3 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["v1", "v3"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--segment", type=int, default=8192)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed rounds of one step per path before timing (heap and caches settle)")
    parser.add_argument("--system-malloc", action="store_true",
                        help="glibc's default allocator settings instead of what `hifigan train` sets on CPU")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    allocator = "glibc default" if args.system_malloc else tune_heap_for_training()  # as `hifigan train` on the CPU
    rng = np.random.default_rng(0)
    print(f"batch {args.batch} x {args.segment} samples, {args.threads} threads, device cpu, "
          f"fp32 matmul {matmul_rate() / 1e9:.0f} GFLOP/s, malloc: {allocator} (both paths)")
    print(f"{'preset':>7} {'precision':>9} {'reference-style (frames/s)':>27} {'hifigan (frames/s)':>19} {'ratio':>6}"
          f" {'GFLOP/step ref, ours':>21} {'GFLOP/s ref, ours':>18}")
    for preset, precision in itertools.product(args.presets, args.precisions):
        model = model_preset(preset)
        config = TrainConfig(batch_size=args.batch, segment_size=args.segment, precision=precision, num_workers=0)
        trainer = Trainer(model, config, tempfile.mkdtemp(), [], progress=False)
        audio = torch.from_numpy((0.3 * rng.standard_normal((args.batch, args.segment))).astype(np.float32))
        batch = {"audio": audio, "mel": None, "names": []}
        frames = args.batch * args.segment // model.mel.hop_length
        reference_step = ReferenceStep(trainer)
        paths = {"reference": lambda: reference_step(batch), "hifigan": lambda: trainer.train_step([batch])}
        seconds = {name: [] for name in paths}
        flops = {name: step_flops(step) for name, step in paths.items()}  # also the first warm-up step
        for _ in range(args.warmup):
            for step in paths.values():
                step()
        for _ in range(args.rounds):  # taking turns, so drifts in machine speed hit both alike
            for name, step in paths.items():
                seconds[name].append(timed(step, args.steps))
        reference, ours = (statistics.median(seconds[name]) for name in paths)
        print(f"{preset:>7} {precision:>9} {frames / reference:27.1f} {frames / ours:19.1f} {reference / ours:6.2f}"
              f" {flops['reference'] / 1e9:10.0f} {flops['hifigan'] / 1e9:10.0f}"
              f" {flops['reference'] / reference / 1e9:9.0f} {flops['hifigan'] / ours / 1e9:8.0f}")


if __name__ == "__main__":
    main()
