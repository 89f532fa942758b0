"""NVIDIA DeepLearningExamples (DLE) HiFi-GAN checkpoints.

`hifigan_gen_checkpoint_{epoch}.pt`: {'generator', 'gen_ema', 'config', 'train_setup',
'train_state'}; generator keys nested by stage (resblocks.{stage}.{kernel}.*), legacy weight
norm, maybe a `module.` prefix. `config` holds the architecture, `train_setup` the audio
settings. `hifigan_discrim_checkpoint_{epoch}.pt`: {'mpd', 'msd', 'mpd_ema', 'msd_ema',
'optim_g', 'optim_d', 'scaler_g', 'scaler_d', 'train_state', 'steps', 'epoch'}.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..checkpoint import Checkpoint, config_from_shapes, save_checkpoint, weight_normed_state
from ..config import GeneratorConfig, MelConfig, ModelConfig
from ..errors import CheckpointError, ConfigError
from . import original
from .common import nest_resblocks, our_generator_state, to_legacy_norm

NAME = "dle"
_MARKERS = ("train_setup", "gen_ema", "train_state", "config")
_EPOCH_NAME = re.compile(r"^hifigan_gen_checkpoint_(\w+)\.pt$")
ARCHITECTURE_KEYS = ("upsample_rates", "upsample_kernel_sizes", "upsample_initial_channel", "resblock",
                     "resblock_kernel_sizes", "resblock_dilation_sizes")


def matches(obj: Any) -> bool:
    if not original.matches(obj):
        return False
    nested = any(re.match(r"^(module\.)?resblocks\.\d+\.\d+\.", key) for key in obj["generator"])
    return nested or any(marker in obj for marker in _MARKERS)


def discriminator_file_for(path: Path) -> Path | None:
    match = _EPOCH_NAME.match(path.name)
    sibling = path.with_name(f"hifigan_discrim_checkpoint_{match.group(1)}.pt") if match else None
    return sibling if sibling is not None and sibling.is_file() else None


def _config(obj: dict, state: dict, source: str) -> ModelConfig:
    architecture, setup = obj.get("config") or {}, obj.get("train_setup") or {}
    try:
        if not all(key in architecture for key in ARCHITECTURE_KEYS):
            return config_from_shapes(state, source)
        generator = GeneratorConfig(**{key: architecture[key] for key in ARCHITECTURE_KEYS})
        defaults = MelConfig()
        mel = MelConfig(
            sample_rate=int(setup.get("sampling_rate", defaults.sample_rate)),
            n_fft=int(setup.get("filter_length", defaults.n_fft)),
            win_length=int(setup.get("win_length", defaults.win_length)),
            hop_length=int(setup.get("hop_length", defaults.hop_length)),
            n_mels=int(setup.get("num_mels", defaults.n_mels)),
            f_min=float(setup.get("mel_fmin", defaults.f_min)),
            f_max=setup.get("mel_fmax", defaults.f_max))
        return ModelConfig(mel=mel, generator=generator)
    except (ConfigError, TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: invalid DLE config ({err})") from None


def read(obj: Any, path: Path, discriminator: Path | None = None) -> Checkpoint:
    state = our_generator_state(obj["generator"], str(path))
    discriminator = discriminator or discriminator_file_for(path)
    training = original.read_training(discriminator) if discriminator else None
    return Checkpoint(generator=state, config=_config(obj, state, str(path)), training=training)


def train_setup(config: ModelConfig) -> dict:
    """DLE's audio settings (`train_setup`) for a model config."""
    mel = config.mel
    return {"segment_size": 8192, "filter_length": mel.n_fft, "num_mels": mel.n_mels, "hop_length": mel.hop_length,
            "win_length": mel.win_length, "sampling_rate": mel.sample_rate, "mel_fmin": mel.f_min,
            "mel_fmax": mel.f_max, "mel_fmax_loss": None, "max_wav_value": 32768.0, "seed": 1234,
            "base_lr": 0.0003, "lr_decay": 0.9998, "epochs_all": 0}


def architecture(config: ModelConfig) -> dict:
    generator = config.generator
    return {"upsample_rates": list(generator.upsample_rates),
            "upsample_kernel_sizes": list(generator.upsample_kernel_sizes),
            "upsample_initial_channel": generator.upsample_initial_channel, "resblock": generator.resblock,
            "resblock_kernel_sizes": list(generator.resblock_kernel_sizes),
            "resblock_dilation_sizes": [list(d) for d in generator.resblock_dilation_sizes]}


def write(checkpoint: Checkpoint, path: Path) -> list[Path]:
    """The generator file (+ the discriminator file beside it when there is training state)."""
    per_stage = len(checkpoint.config.generator.resblock_kernel_sizes)
    generator = nest_resblocks(to_legacy_norm(weight_normed_state(checkpoint.generator)), per_stage)
    training = checkpoint.training
    train_state = {"epoch": training.epoch if training else 0, "iters_all": training.steps if training else 0}
    save_checkpoint({"generator": generator, "gen_ema": None, "config": architecture(checkpoint.config),
                     "train_setup": train_setup(checkpoint.config), "train_state": train_state}, path)
    if training is None:
        return [path]
    match = _EPOCH_NAME.match(path.name)
    d_path = path.with_name(f"hifigan_discrim_checkpoint_{match.group(1) if match else training.epoch}.pt")
    save_checkpoint({"mpd": to_legacy_norm(training.mpd), "msd": to_legacy_norm(training.msd),
                     "mpd_ema": None, "msd_ema": None, "optim_g": training.optim_g, "optim_d": training.optim_d,
                     "scaler_g": training.scaler_g, "scaler_d": training.scaler_d, "train_state": train_state,
                     "steps": training.steps, "epoch": training.epoch}, d_path)
    return [path, d_path]
