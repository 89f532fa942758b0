"""Checkpoint essentials shared by every format: safe loading, atomic saving, strict loads,
state-dict layouts (weight-normed or folded), shape inference, and our native release format.

Foreign formats (original, DLE, NeMo, torchaudio) live in `hifigan.formats`, which maps their
keys onto the names used here: our modules' own state_dict keys, with weight norm either as
parametrisations (`parametrizations.weight.original0/1`) or folded into plain `.weight`.

Files are unpickled with torch's weights-only loader: tensors and plain containers only, so a
malicious file cannot execute code.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any, BinaryIO

import torch

from .audio import atomic_path
from .config import GENERATOR_PRESETS, GeneratorConfig, ModelConfig
from .errors import CheckpointError, ConfigError
from .generator import Generator
from .layers import fold_weight_norm, split_weight_norm

NATIVE_FORMAT = "hifigan"
NATIVE_VERSION = 1
WN_G, WN_V = "parametrizations.weight.original0", "parametrizations.weight.original1"
State = dict[str, torch.Tensor]


@dataclasses.dataclass
class TrainingState:
    """The training half of a checkpoint pair (discriminators and optimisers), in our key names."""

    mpd: State
    msd: State
    optim_g: dict | None = None
    optim_d: dict | None = None
    scaler_g: dict | None = None
    scaler_d: dict | None = None
    steps: int = 0
    epoch: int = 0


@dataclasses.dataclass
class Checkpoint:
    """A generator state (our keys, weight-normed or folded), its config, and optional training state."""

    generator: State
    config: ModelConfig
    training: TrainingState | None = None

    @property
    def weight_normed(self) -> bool:
        return is_weight_normed(self.generator)


def safe_load(path: str | Path) -> Any:
    """torch.load restricted to tensors and plain containers, with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    return safe_load_from(path, str(path))


def safe_load_from(file: str | Path | BinaryIO, source: str) -> Any:
    """Weights-only torch.load of a path or binary file object; `source` names it in errors."""
    path = source
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        blocked = [line.strip() for line in str(err).splitlines() if "GLOBAL" in line]
        if blocked:  # the weights-only unpickler names the callable or class the file asked for
            raise CheckpointError(
                f"{path}: refused: the file asks to run code or build objects other than tensors "
                f"({blocked[0][:160]}); only tensor checkpoints are loaded") from None
        raise CheckpointError(f"{path}: truncated or not a PyTorch checkpoint (unreadable pickle data)") from None
    except Exception as err:  # garbage bytes make the unpickler raise KeyError, IndexError, ...
        raise CheckpointError(f"{path}: truncated or not a PyTorch checkpoint ({_first_line(err)})") from None


def _numpy_globals() -> list:
    """numpy scalars, arrays and dtypes, which training states often hold: plain data, no code.

    Each under its numpy 2 name and the `numpy.core` name that files pickled by numpy 1 use."""
    import numpy as np

    core = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    objects = [core.scalar, core._reconstruct, np.ndarray, np.dtype,
               *{type(np.dtype(name)) for name in ("bool", "int32", "int64", "float16", "float32", "float64")}]
    aliases = [(core.scalar, "numpy.core.multiarray.scalar"), (core._reconstruct, "numpy.core.multiarray._reconstruct")]
    return objects + aliases


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def save_checkpoint(obj: Any, path: str | Path) -> None:
    """torch.save through a temporary file, renamed into place only when complete."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def is_weight_normed(state: State) -> bool:
    normed = any(key.endswith(WN_G) for key in state)
    if normed and any(key.endswith(".weight") for key in state):
        raise CheckpointError("the generator mixes weight-normalised and plain weights; it cannot be loaded")
    return normed


def build_generator(config: ModelConfig, *, weight_norm: bool) -> Generator:
    """A Generator from a ModelConfig (the edge where the config is unpacked)."""
    return Generator(in_channels=config.mel.n_mels, weight_norm=weight_norm, **dataclasses.asdict(config.generator))


def strict_load(model: torch.nn.Module, state: State, source: str) -> None:
    """load_state_dict(strict=True) with a one-line error naming missing, extra or misshapen keys."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshapen = [f"{key} {tuple(state[key].shape)} vs {tuple(expected[key].shape)}"
                 for key in expected if key in state and state[key].shape != expected[key].shape]
    problems = [f"{label}: {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
                for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshapen))
                if items]
    if problems:
        raise CheckpointError(f"{source}: weights do not fit the model ({'; '.join(problems)})")
    model.load_state_dict(state, strict=True)


def generator_from(checkpoint: Checkpoint, source: str = "checkpoint") -> Generator:
    """Build the generator a checkpoint describes, load it strictly, fold weight norm, eval mode."""
    generator = build_generator(checkpoint.config, weight_norm=checkpoint.weight_normed)
    strict_load(generator, checkpoint.generator, source)
    return fold_weight_norm(generator).eval()


def folded_state(checkpoint: Checkpoint) -> State:
    """The generator state with weight norm folded into plain `.weight` keys."""
    if not checkpoint.weight_normed:
        return dict(checkpoint.generator)
    return {key: value.detach() for key, value in generator_from(checkpoint).state_dict().items()}


def weight_normed_state(state: State) -> State:
    """The generator state in weight-norm form; folded weights are split exactly (see split_weight_norm)."""
    if is_weight_normed(state):
        return dict(state)
    normed = {}
    for key, value in state.items():
        if key.endswith(".weight"):
            g, v = split_weight_norm(value)
            stem = key[: -len("weight")]
            normed[stem + WN_G], normed[stem + WN_V] = g, v
        else:
            normed[key] = value
    return normed


def _weight(state: State, module: str) -> torch.Tensor:
    """The (direction) weight tensor of `module`, whatever the weight-norm layout."""
    for key in (f"{module}.weight", f"{module}.{WN_V}"):
        if key in state:
            return state[key]
    raise CheckpointError(f"checkpoint has no weight for {module}")


def _indices(state: State, prefix: str, depth: int) -> set[str]:
    return {key.split(".")[depth] for key in state if key.startswith(prefix)}


def infer_generator_config(state: State) -> tuple[GeneratorConfig, int]:
    """Architecture and mel band count from tensor shapes (our key names).

    Dilations are not stored in weights; they are taken from the published preset whose
    shapes match. Upsample rates are taken as kernel // 2, the convention of every published
    HiFi-GAN. Anything else needs a config beside the checkpoint.
    """
    pre = _weight(state, "conv_pre")
    num_ups = len(_indices(state, "ups.", 1))
    kernels = [_weight(state, f"ups.{i}").shape[-1] for i in range(num_ups)]
    k_per_stage = len(_indices(state, "resblocks.", 1)) // max(num_ups, 1)
    resblock = "1" if any(".convs1." in key for key in state) else "2"
    conv_name = "convs1" if resblock == "1" else "convs"
    block_kernels = tuple(_weight(state, f"resblocks.{j}.{conv_name}.0").shape[-1] for j in range(k_per_stage))
    n_dilations = len(_indices(state, f"resblocks.0.{conv_name}.", 3))
    for candidate in GENERATOR_PRESETS.values():
        if (candidate.resblock, candidate.resblock_kernel_sizes) == (resblock, block_kernels) and all(
                len(d) == n_dilations for d in candidate.resblock_dilation_sizes):
            config = GeneratorConfig(
                resblock=resblock, upsample_rates=tuple(k // 2 for k in kernels), upsample_kernel_sizes=tuple(kernels),
                upsample_initial_channel=pre.shape[0], resblock_kernel_sizes=block_kernels,
                resblock_dilation_sizes=candidate.resblock_dilation_sizes)
            return config, pre.shape[1]
    raise CheckpointError(
        "cannot infer this generator's dilations from its weights; put the config.json it was "
        "trained with beside the checkpoint")


def config_from_shapes(state: State, source: str) -> ModelConfig:
    """A ModelConfig for a generator state that came without one: the 22.05 kHz reference mel."""
    from .config import MelConfig

    generator, n_mels = infer_generator_config(state)
    mel = MelConfig()
    if (n_mels, generator.hop_length) != (mel.n_mels, mel.hop_length):
        raise CheckpointError(
            f"{source}: a {n_mels}-band generator with hop {generator.hop_length} is not the 22.05 kHz "
            "reference model; put its config.json beside the checkpoint")
    try:
        return ModelConfig(mel=mel, generator=generator)
    except ConfigError as err:
        raise CheckpointError(f"{source}: {err}") from None


def read_native(obj: dict[str, Any], source: str) -> Checkpoint:
    """Our release format: {'format': 'hifigan', 'kind': 'release', 'version', 'config', 'generator'}."""
    if obj.get("version", 0) > NATIVE_VERSION:
        raise CheckpointError(f"{source}: written by a newer hifigan (format version {obj['version']}); upgrade")
    if obj.get("kind") not in ("release", "training") or not isinstance(obj.get("generator"), dict):
        raise CheckpointError(f"{source}: a hifigan {obj.get('kind')!r} file, not a generator checkpoint")
    try:
        config = ModelConfig.from_dict(obj["config"])
    except (ConfigError, KeyError) as err:
        raise CheckpointError(f"{source}: invalid config inside the checkpoint ({err})") from None
    checkpoint = Checkpoint(generator=obj["generator"], config=config)
    if checkpoint.weight_normed != (obj["kind"] == "training"):
        raise CheckpointError(f"{source}: a {obj['kind']} file with the wrong weight layout")
    return checkpoint  # keys and shapes are checked where the generator is built (generator_from)


def write_native(checkpoint: Checkpoint, path: str | Path) -> None:
    """Write the native release format: folded fp32 weights plus the config, atomically."""
    state = {key: value.detach().cpu().float() for key, value in folded_state(checkpoint).items()}
    save_checkpoint({"format": NATIVE_FORMAT, "kind": "release", "version": NATIVE_VERSION,
                     "config": checkpoint.config.to_dict(), "generator": state}, path)


def save_release(generator: Generator, config: ModelConfig, path: str | Path) -> None:
    """Write a Generator (weight-normed or folded) in the native release format."""
    state = {key: value.detach() for key, value in generator.state_dict().items()}
    checkpoint = Checkpoint(generator=state, config=config)
    strict_load(build_generator(config, weight_norm=checkpoint.weight_normed), state, str(path))
    write_native(checkpoint, path)
