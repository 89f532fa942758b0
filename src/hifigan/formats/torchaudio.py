"""torchaudio-style generator weights: a bare state_dict with weight norm already folded
(plain `.weight` keys) and the original names (flat resblocks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..checkpoint import Checkpoint, folded_state, save_checkpoint
from . import original

NAME = "torchaudio"


def read(obj: Any, path: Path, discriminator: Path | None = None) -> Checkpoint:
    return original.read(obj, path, discriminator)


def write(checkpoint: Checkpoint, path: Path) -> list[Path]:
    save_checkpoint({key: value.contiguous() for key, value in folded_state(checkpoint).items()}, path)
    return [path]
