"""Declarative key maps between our state_dict names and other implementations', plus the
checks every format reader shares.

Ours: torch parametrisations (`X.parametrizations.weight.original0/1` for weight norm,
`X.parametrizations.weight.original` and `.0._u/_v` for spectral norm) and a flat
`resblocks.{stage * K + kernel}` list. Theirs: legacy `torch.nn.utils` names (`X.weight_g/_v`,
`X.weight_orig/_u/_v`), sometimes nested `resblocks.{stage}.{kernel}`, sometimes prefixed.
"""

from __future__ import annotations

import re

from ..checkpoint import State, TrainingState, strict_load
from ..discriminators import MultiPeriodDiscriminator, MultiScaleDiscriminator
from ..errors import CheckpointError

# our suffix -> legacy torch.nn.utils suffix
LEGACY_WEIGHT_NORM = {"parametrizations.weight.original0": "weight_g", "parametrizations.weight.original1": "weight_v"}
LEGACY_SPECTRAL_NORM = {"parametrizations.weight.original": "weight_orig", "parametrizations.weight.0._u": "weight_u",
                        "parametrizations.weight.0._v": "weight_v"}
_NESTED = re.compile(r"^resblocks\.(\d+)\.(\d+)\.")
_FLAT = re.compile(r"^resblocks\.(\d+)\.")
REFERENCE_PERIODS = (2, 3, 5, 7, 11)


def to_legacy_norm(state: State) -> State:
    """Our parametrisation keys -> legacy weight_g/weight_v and weight_orig/weight_u/weight_v."""
    renamed = {}
    for key, value in state.items():
        for ours, theirs in (*LEGACY_WEIGHT_NORM.items(), *LEGACY_SPECTRAL_NORM.items()):
            if key == ours or key.endswith("." + ours):  # a bare conv's keys have no module prefix
                key = key[: -len(ours)] + theirs
                break
        renamed[key] = value
    return renamed


def from_legacy_norm(state: State) -> State:
    """Legacy norm keys -> ours; a module with `weight_orig` is spectral-normed, else weight-normed."""
    spectral = {key.rpartition(".")[0] for key in state if key.rpartition(".")[2] == "weight_orig"}
    weight_map = {theirs: ours for ours, theirs in LEGACY_WEIGHT_NORM.items()}
    spectral_map = {theirs: ours for ours, theirs in LEGACY_SPECTRAL_NORM.items()}
    renamed = {}
    for key, value in state.items():
        module, dot, leaf = key.rpartition(".")
        mapping = spectral_map if module in spectral else weight_map
        renamed[f"{module}{dot}{mapping[leaf]}" if leaf in mapping else key] = value
    return renamed


def nest_resblocks(state: State, per_stage: int) -> State:
    """resblocks.{n}.* -> resblocks.{n // K}.{n % K}.* (DLE, NeMo)."""
    def rename(key: str) -> str:
        match = _FLAT.match(key)
        if not match:
            return key
        n = int(match.group(1))
        return f"resblocks.{n // per_stage}.{n % per_stage}." + key[match.end():]
    return {rename(key): value for key, value in state.items()}


def flatten_resblocks(state: State) -> State:
    """resblocks.{stage}.{kernel}.* -> resblocks.{stage * K + kernel}.*; flat states pass through."""
    nested = [m for m in map(_NESTED.match, state) if m]
    if not nested or any(k.startswith("resblocks.") and not _NESTED.match(k) for k in state):
        return dict(state)
    per_stage = 1 + max(int(m.group(2)) for m in nested)

    def rename(key: str) -> str:
        match = _NESTED.match(key)
        if not match:
            return key
        return f"resblocks.{int(match.group(1)) * per_stage + int(match.group(2))}." + key[match.end():]
    return {rename(key): value for key, value in state.items()}


def strip_prefix(state: State, prefix: str) -> State:
    """Keys under `prefix`, with it removed; other keys are dropped."""
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def add_prefix(state: State, prefix: str) -> State:
    return {prefix + key: value for key, value in state.items()}


def tensors_only(obj: object) -> State:
    return {key: value for key, value in obj.items() if hasattr(value, "shape")} if isinstance(obj, dict) else {}


def bare_generator_state(raw: object) -> State:
    """The tensors of a state_dict with a DDP `module.` or a NeMo `generator.` prefix removed."""
    state = tensors_only(raw)
    for prefix in ("module.", "generator."):
        if any(key.startswith(prefix + "conv_pre.") for key in state):
            state = strip_prefix(state, prefix)
    return state


def our_generator_state(raw: State, source: str) -> State:
    """Any implementation's generator keys (legacy/new norm, flat/nested, DDP prefix) -> ours."""
    state = bare_generator_state(raw)
    if not any(key.startswith("conv_pre.") for key in state):
        raise CheckpointError(f"{source}: no generator weights (conv_pre.*, ups.*, resblocks.*) found")
    return from_legacy_norm(flatten_resblocks(state))


def _out_channels(state: State, prefix: str) -> list[int]:
    convs = sorted(_indices(state, prefix))
    return [_discriminator_weight(state, f"{prefix}{i}").shape[0] for i in convs]


def _indices(state: State, prefix: str) -> set[int]:
    return {int(key[len(prefix):].split(".")[0]) for key in state if key.startswith(prefix)}


def _discriminator_weight(state: State, module: str):
    for suffix in ("parametrizations.weight.original1", "parametrizations.weight.original", "weight"):
        if f"{module}.{suffix}" in state:
            return state[f"{module}.{suffix}"]
    raise CheckpointError(f"discriminator has no weight for {module}")


def discriminators_for(mpd: State, msd: State, source: str) -> tuple[MultiPeriodDiscriminator, MultiScaleDiscriminator]:
    """Build MPD and MSD with widths read from the states, and load them strictly (shape check)."""
    try:
        periods = REFERENCE_PERIODS[: len(_indices(mpd, "discriminators."))]
        mpd_channels = _out_channels(mpd, "discriminators.0.convs.")[:-1]
        msd_channels = _out_channels(msd, "discriminators.0.convs.")
        in_channels = [1, *msd_channels[:-1]]
        groups = [c // _discriminator_weight(msd, f"discriminators.0.convs.{i}").shape[1]
                  for i, c in enumerate(in_channels)]
        period_discriminator = MultiPeriodDiscriminator(periods=periods, channels=mpd_channels)
        scale_discriminator = MultiScaleDiscriminator(num_scales=len(_indices(msd, "discriminators.")),
                                                      channels=msd_channels, groups=groups)
    except (IndexError, ValueError, ZeroDivisionError) as err:
        raise CheckpointError(f"{source}: discriminator weights of an unknown layout ({err})") from None
    strict_load(period_discriminator, mpd, f"{source} (mpd)")
    strict_load(scale_discriminator, msd, f"{source} (msd)")
    return period_discriminator, scale_discriminator


def check_training(training: TrainingState, source: str) -> TrainingState:
    discriminators_for(training.mpd, training.msd, source)
    return training
