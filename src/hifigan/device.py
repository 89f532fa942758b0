"""Turning a user's device string into a torch.device, with one-line errors, and what the CPU computes fast."""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import InputError


def resolve_device(device: str | torch.device) -> torch.device:
    """'cpu', 'cuda', 'cuda:1', 'mps' ... -> torch.device; refuses devices this machine does not have."""
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InputError(f"unknown device {device!r} ({err}); use cpu, cuda or cuda:N") from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r} requested but CUDA is not available here; use --device cpu")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise InputError(f"device {device!r} does not exist: {torch.cuda.device_count()} CUDA device(s) found")
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {device!r} requested but MPS is not available here; use --device cpu")
    return chosen


def cpu_bf16_supported() -> bool:
    """True when this CPU computes bf16 convolutions natively (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_bf16_slower_than_fp32(cpuinfo: str | None = None) -> bool:
    """True on Intel CPUs with AVX512-BF16 but no AMX tiles, where bf16 convolutions run slower
    than fp32 ones: on a 2-core Xeon with AVX-512 (BF16, FP16) and no AMX, oneDNN's bf16 convs
    ran 0.61-0.98x the fp32 ones and the bf16 V1 generator 0.53-0.54x our fp32 path, while on an
    AMD EPYC with AVX512-BF16 the bf16 V1 generator ran 1.6-1.7x our fp32 path.
    `cpuinfo` defaults to /proc/cpuinfo (False where it cannot be read)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set(next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines()
                      if line.startswith("flags")), []))
    return "GenuineIntel" in cpuinfo and "avx512_bf16" in flags and "amx_bf16" not in flags
