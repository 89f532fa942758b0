"""Reading and writing generator checkpoints safely.

Supported generator layouts (detected from content, not file names):
- the original authors' {'generator': state_dict} (g_XXXXXXXX, generator_v1, *.pth.tar) and
  bare state_dicts, with legacy weight norm (weight_g / weight_v), parametrisation keys
  (parametrizations.weight.original0 / original1) or folded plain `.weight` keys; a
  `module.` (DDP) or `generator.` prefix is stripped;
- our native release format: {'format': 'hifigan', 'kind': 'release', 'config': ..., 'generator': ...}.

Files are unpickled with torch's weights-only loader: tensors and plain containers only, so a
malicious file cannot execute code.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
from pathlib import Path
from typing import Any

import torch

from .audio import atomic_path
from .config import GENERATOR_PRESETS, GeneratorConfig, MelConfig, ModelConfig, load_json_config
from .errors import CheckpointError, ConfigError
from .generator import Generator
from .layers import fold_weight_norm

NATIVE_FORMAT = "hifigan"
NATIVE_VERSION = 1
_G, _V = "parametrizations.weight.original0", "parametrizations.weight.original1"
_LEGACY_SUFFIXES = {"weight_g": _G, "weight_v": _V}
_STRIPPED_PREFIXES = ("module.", "generator.")


def safe_load(path: str | Path) -> Any:
    """torch.load restricted to tensors and plain containers, with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights_only" in str(err).lower() or "weights only" in str(err).lower():
            raise CheckpointError(
                f"{path}: refused: the file asks to run code or build objects other than tensors; "
                "only tensor checkpoints are loaded") from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_first_line(err)})") from None
    except Exception as err:  # garbage bytes make the unpickler raise KeyError, IndexError, ...
        raise CheckpointError(
            f"{path}: truncated or not a PyTorch checkpoint ({_first_line(err)})") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def save_checkpoint(obj: Any, path: str | Path) -> None:
    """torch.save through a temporary file, renamed into place only when complete."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def extract_generator_state(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Find the generator's state_dict in a loaded checkpoint and strip wrapper prefixes."""
    state = obj.get("generator") if isinstance(obj, dict) and isinstance(obj.get("generator"), dict) else obj
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{source}: not a HiFi-GAN generator checkpoint (found {type(obj).__name__})")
    state = {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}
    for prefix in _STRIPPED_PREFIXES:
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix):]: value for key, value in state.items()}
        elif any(key.startswith(prefix + "conv_pre.") for key in state):
            state = {key[len(prefix):]: v for key, v in state.items() if key.startswith(prefix)}
    if not any(key.startswith("conv_pre.") for key in state):
        found = ", ".join(sorted(obj)[:6]) if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(
            f"{source}: not a HiFi-GAN generator checkpoint: expected a 'generator' state_dict with "
            f"conv_pre.*, ups.*, resblocks.* keys, found keys: {found}")
    return state


def to_parametrization_keys(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool]:
    """Rename legacy weight_g/weight_v keys to parametrisation keys.

    Returns the renamed state and whether it is weight-normalised (False: folded .weight keys).
    """
    renamed = {}
    for key, value in state.items():
        stem, _, leaf = key.rpartition(".")
        renamed[f"{stem}.{_LEGACY_SUFFIXES[leaf]}" if leaf in _LEGACY_SUFFIXES else key] = value
    normed = any(key.endswith(_G) for key in renamed)
    if normed and any(key.endswith(".weight") for key in renamed):
        raise CheckpointError("checkpoint mixes weight-normalised and plain weights; it cannot be loaded")
    return renamed, normed


def _weight(state: dict[str, torch.Tensor], module: str) -> torch.Tensor:
    """The (direction) weight tensor of `module`, whatever the weight-norm layout."""
    for key in (f"{module}.weight", f"{module}.{_V}"):
        if key in state:
            return state[key]
    raise CheckpointError(f"checkpoint has no weight for {module}")


def infer_generator_config(state: dict[str, torch.Tensor]) -> tuple[GeneratorConfig, int]:
    """Architecture and mel band count from tensor shapes (keys already renamed).

    Dilations are not stored in weights; they are taken from the published preset whose
    shapes match. Upsample rates are taken as kernel // 2, the convention of every published
    HiFi-GAN. Anything else needs a config.json beside the checkpoint.
    """
    pre = _weight(state, "conv_pre")
    num_ups = len({key.split(".")[1] for key in state if key.startswith("ups.")})
    kernels = [_weight(state, f"ups.{i}").shape[-1] for i in range(num_ups)]
    num_blocks = len({key.split(".")[1] for key in state if key.startswith("resblocks.")})
    k_per_stage = num_blocks // max(num_ups, 1)
    resblock = "1" if any(".convs1." in key for key in state) else "2"
    conv_name = "convs1" if resblock == "1" else "convs"
    block_kernels = [_weight(state, f"resblocks.{j}.{conv_name}.0").shape[-1] for j in range(k_per_stage)]
    n_dilations = len({key.split(".")[3] for key in state if key.startswith(f"resblocks.0.{conv_name}.")})
    for candidate in GENERATOR_PRESETS.values():
        if (candidate.resblock, candidate.resblock_kernel_sizes) == (resblock, tuple(block_kernels)) and all(
                len(d) == n_dilations for d in candidate.resblock_dilation_sizes):
            config = GeneratorConfig(
                resblock=resblock, upsample_rates=tuple(k // 2 for k in kernels), upsample_kernel_sizes=tuple(kernels),
                upsample_initial_channel=pre.shape[0], resblock_kernel_sizes=tuple(block_kernels),
                resblock_dilation_sizes=candidate.resblock_dilation_sizes)
            return config, pre.shape[1]
    raise CheckpointError(
        "cannot infer this generator's dilations from its weights; put the config.json it was "
        "trained with beside the checkpoint")


def build_generator(config: ModelConfig, *, weight_norm: bool) -> Generator:
    """A Generator from a ModelConfig (the edge where the config is unpacked)."""
    return Generator(in_channels=config.mel.n_mels, weight_norm=weight_norm, **dataclasses.asdict(config.generator))


def strict_load(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
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


def _default_mel_for(n_mels: int, hop_length: int, source: str) -> MelConfig:
    mel = MelConfig()
    if (n_mels, hop_length) != (mel.n_mels, mel.hop_length):
        raise CheckpointError(
            f"{source}: a {n_mels}-band generator with hop {hop_length} is not the 22.05 kHz reference "
            "model; put its config.json beside the checkpoint")
    return mel


def _config_for_foreign(path: Path, state: dict[str, torch.Tensor]) -> ModelConfig:
    """config.json beside the file if there is one, else an architecture inferred from shapes."""
    beside = path.parent / "config.json"
    if beside.is_file():
        return load_json_config(beside)
    generator, n_mels = infer_generator_config(state)
    return ModelConfig(mel=_default_mel_for(n_mels, generator.hop_length, str(path)), generator=generator)


def load_generator(path: str | Path, config: ModelConfig | None = None) -> tuple[Generator, ModelConfig]:
    """Load any supported generator checkpoint -> (Generator with weight norm folded, config)."""
    path = Path(path)
    obj = safe_load(path)
    if isinstance(obj, dict) and obj.get("format") == NATIVE_FORMAT:
        return _load_native(obj, str(path))
    state, normed = to_parametrization_keys(extract_generator_state(obj, str(path)))
    try:
        config = config or _config_for_foreign(path, state)
    except ConfigError as err:
        raise CheckpointError(f"{path}: {err}") from None
    generator = build_generator(config, weight_norm=normed)
    strict_load(generator, state, str(path))
    return fold_weight_norm(generator).eval(), config


def _load_native(obj: dict[str, Any], source: str) -> tuple[Generator, ModelConfig]:
    if obj.get("version", 0) > NATIVE_VERSION:
        raise CheckpointError(f"{source}: written by a newer hifigan (format version {obj['version']}); upgrade")
    if obj.get("kind") != "release" or not isinstance(obj.get("generator"), dict):
        raise CheckpointError(f"{source}: a hifigan {obj.get('kind')!r} file, not a release generator")
    try:
        config = ModelConfig.from_dict(obj["config"])
    except (ConfigError, KeyError) as err:
        raise CheckpointError(f"{source}: invalid config inside the checkpoint ({err})") from None
    generator = build_generator(config, weight_norm=False)
    strict_load(generator, obj["generator"], source)
    return generator.eval(), config


def save_release(generator: Generator, config: ModelConfig, path: str | Path) -> None:
    """Write the native release format: folded fp32 weights plus the config, atomically."""
    folded = fold_weight_norm(copy.deepcopy(generator))
    state = {key: value.detach().cpu().float() for key, value in folded.state_dict().items()}
    strict_load(build_generator(config, weight_norm=False), state, str(path))  # config and weights agree
    save_checkpoint({"format": NATIVE_FORMAT, "kind": "release", "version": NATIVE_VERSION,
                     "config": config.to_dict(), "generator": state}, path)
