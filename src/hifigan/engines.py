"""Choosing and building the inference engine behind a Vocoder: backend x precision x device.

Backends:
    torch        our fast path: fast.FastGenerator (channels-last 2-D convolutions; the same
                 graph on GPU), bf16/fp16 with fp32 conv_pre/conv_post and residual stream.
    eager        the folded generator as written, every layer in the chosen dtype (the baseline).
    compile      torch.compile of the eager generator.
    onnxruntime  the exported ONNX model in ONNX Runtime (CPU, fp32).
    openvino     the exported ONNX model in OpenVINO (CPU; fp32, or bf16 where the CPU has it).
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from .config import ModelConfig
from .errors import InputError
from .device import cpu_bf16_slower_than_fp32, cpu_bf16_supported
from .fast import FastGenerator
from .generator import Generator

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
BACKENDS = ("torch", "eager", "compile", "onnxruntime", "openvino")
RUNTIME_BACKENDS = ("onnxruntime", "openvino")


def check_choice(precision: str, backend: str) -> None:
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def effective_precision(precision: str, device: torch.device, backend: str = "torch") -> str:
    """The precision that will really run: reduced precisions the CPU cannot compute fast fall
    back to fp32 with a warning (emulated bf16 runs ~10x slower than fp32)."""
    check_choice(precision, backend)
    if backend == "onnxruntime" and precision != "fp32":
        raise InputError("the onnxruntime backend runs fp32; use backend='torch' or 'openvino' for bf16")
    if backend in RUNTIME_BACKENDS and device.type != "cpu":
        raise InputError(f"the {backend} backend runs on the CPU; use backend='torch' for {device}")
    if device.type != "cpu" or precision == "fp32":
        return precision
    if precision == "bf16" and cpu_bf16_supported():
        if cpu_bf16_slower_than_fp32():
            warnings.warn("bf16 runs slower than fp32 on this CPU (Intel AVX512-BF16 without AMX); "
                          "precision='fp32' is faster here and exact", stacklevel=3)
        return precision
    reason = ("this CPU has no native bf16 (AVX512-BF16 or AMX)" if precision == "bf16"
              else "fp16 has no fast path on CPUs")
    warnings.warn(f"precision {precision!r} requested but {reason}; running fp32 instead", stacklevel=3)
    return "fp32"


def set_threads(threads: int | None) -> None:
    """Set torch's intra-op threads (process-wide); None leaves torch's default."""
    if threads is None:
        return
    if not isinstance(threads, int) or threads < 1:
        raise InputError(f"threads must be a positive integer, got {threads!r}")
    torch.set_num_threads(threads)


def build_engine(generator: Generator, config: ModelConfig, *, device: torch.device, precision: str,
                 backend: str, threads: int | None = None) -> nn.Module:
    """A folded fp32 generator -> a module (B, n_mels, T) float32 -> (B, 1, T * hop) on `device`."""
    dtype = PRECISIONS[precision]
    generator = generator.float().to(device).eval()
    if backend in RUNTIME_BACKENDS:
        from .export import runtime_generator, onnx_bytes

        return runtime_generator(backend, onnx_bytes(generator, config), threads=threads, precision=precision)
    set_threads(threads)
    if backend == "torch":
        # Fused oneDNN ops pay in bf16 only; FastGenerator uses them on CPU only (its `fused`).
        return FastGenerator(generator, dtype=dtype, fused=dtype == torch.bfloat16)
    # A reduced-precision copy, so the fp32 generator the caller (and Vocoder.generator) holds stays fp32.
    eager = generator if dtype == torch.float32 else copy.deepcopy(generator).to(dtype)
    return torch.compile(eager, dynamic=None) if backend == "compile" else eager
