"""Turning a user's device string into a torch.device, with one-line errors."""

from __future__ import annotations

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
