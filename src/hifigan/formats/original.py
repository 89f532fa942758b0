"""The original authors' format (jik876/hifi-gan).

Generator file (`g_00100000`, `generator_v1`, `*.pth.tar`): {'generator': state_dict} with
legacy weight norm keys and a flat resblock list; the architecture sits in a config.json in
the same folder. Training file (`do_00100000`): {'mpd', 'msd', 'optim_g', 'optim_d', 'steps',
'epoch'}. Bare normed state_dicts are read the same way.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..audio import atomic_path
from ..checkpoint import Checkpoint, TrainingState, config_from_shapes, safe_load, save_checkpoint, weight_normed_state
from ..config import load_json_config, to_original_json
from ..errors import CheckpointError, ConfigError
from .common import check_training, from_legacy_norm, our_generator_state, tensors_only, to_legacy_norm

NAME = "original"
_STEP_NAME = re.compile(r"^g_(\d+)$")


def matches(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("generator"), dict)


def discriminator_file_for(path: Path) -> Path | None:
    """do_XXXXXXXX beside g_XXXXXXXX, when it exists."""
    match = _STEP_NAME.match(path.name)
    sibling = path.with_name(f"do_{match.group(1)}") if match else None
    return sibling if sibling is not None and sibling.is_file() else None


def read(obj: Any, path: Path, discriminator: Path | None = None) -> Checkpoint:
    state = our_generator_state(obj["generator"] if matches(obj) else obj, str(path))
    beside = path.parent / "config.json"
    try:
        config = load_json_config(beside) if beside.is_file() else config_from_shapes(state, str(path))
    except ConfigError as err:
        raise CheckpointError(f"{path}: {err}") from None
    discriminator = discriminator or discriminator_file_for(path)
    training = read_training(discriminator) if discriminator else None
    return Checkpoint(generator=state, config=config, training=training)


def read_training(path: Path) -> TrainingState:
    obj = safe_load(path)
    if not (isinstance(obj, dict) and isinstance(obj.get("mpd"), dict) and isinstance(obj.get("msd"), dict)):
        raise CheckpointError(f"{path}: not a discriminator checkpoint (expected 'mpd' and 'msd' entries)")
    training = TrainingState(
        mpd=from_legacy_norm(tensors_only(obj["mpd"])), msd=from_legacy_norm(tensors_only(obj["msd"])),
        optim_g=obj.get("optim_g"), optim_d=obj.get("optim_d"), scaler_g=obj.get("scaler_g"),
        scaler_d=obj.get("scaler_d"), steps=int(obj.get("steps", 0)), epoch=int(obj.get("epoch", 0)))
    return check_training(training, str(path))


def write(checkpoint: Checkpoint, path: Path) -> list[Path]:
    """g_ file + config.json beside it (+ do_ file when the checkpoint carries training state)."""
    save_checkpoint({"generator": to_legacy_norm(weight_normed_state(checkpoint.generator))}, path)
    config_path = path.parent / "config.json"
    with atomic_path(config_path) as tmp:
        tmp.write_text(json.dumps(to_original_json(checkpoint.config), indent=4) + "\n")
    written = [path, config_path]
    if checkpoint.training is not None:
        training = checkpoint.training
        match = _STEP_NAME.match(path.name)
        d_path = path.with_name(f"do_{match.group(1)}" if match else f"do_{training.steps:08d}")
        save_checkpoint({"mpd": to_legacy_norm(training.mpd), "msd": to_legacy_norm(training.msd),
                         "optim_g": training.optim_g, "optim_d": training.optim_d,
                         "steps": training.steps, "epoch": training.epoch}, d_path)
        written.append(d_path)
    return written
