"""Small frozen configuration dataclasses, presets, and JSON in/out.

Configs are unpacked into explicit keyword arguments at the edge (checkpoint, vocoder, cli);
model modules never see them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path
from typing import Any

from .errors import ConfigError


@dataclasses.dataclass(frozen=True)
class MelConfig:
    """Mel front end of the model input (the reference framing; see mel.py)."""

    sample_rate: int = 22050
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 256
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = 8000.0

    def __post_init__(self) -> None:
        if min(self.sample_rate, self.n_fft, self.win_length, self.hop_length, self.n_mels) <= 0:
            raise ConfigError(f"mel settings must be positive, got {self}")
        if self.win_length > self.n_fft:
            raise ConfigError(f"win_length {self.win_length} is larger than n_fft {self.n_fft}")
        if self.f_max is not None and self.f_max > self.sample_rate / 2:
            raise ConfigError(f"f_max {self.f_max} is above the Nyquist frequency {self.sample_rate / 2}")


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """Generator architecture; see generator.Generator for the meaning of each field."""

    resblock: str = "1"
    upsample_rates: tuple[int, ...] = (8, 8, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 4, 4)
    upsample_initial_channel: int = 512
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))

    def __post_init__(self) -> None:
        # JSON gives lists; keep the dataclass hashable and comparable.
        object.__setattr__(self, "resblock", str(self.resblock))
        for name in ("upsample_rates", "upsample_kernel_sizes", "resblock_kernel_sizes"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        dilations = tuple(tuple(int(d) for d in ds) for ds in self.resblock_dilation_sizes)
        object.__setattr__(self, "resblock_dilation_sizes", dilations)
        self._validate()

    def _validate(self) -> None:
        if self.resblock not in ("1", "2"):
            raise ConfigError(f"resblock must be '1' or '2', got {self.resblock!r}")
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ConfigError("upsample_rates and upsample_kernel_sizes differ in length")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ConfigError("resblock_kernel_sizes and resblock_dilation_sizes differ in length")
        for rate, kernel in zip(self.upsample_rates, self.upsample_kernel_sizes):
            if (kernel - rate) % 2 or kernel < rate:
                raise ConfigError(f"upsample kernel {kernel} must exceed rate {rate} by an even number")
        if self.upsample_initial_channel % 2 ** len(self.upsample_rates):
            raise ConfigError("upsample_initial_channel must be divisible by 2**len(upsample_rates)")

    @property
    def hop_length(self) -> int:
        """Output samples per input frame: the product of the upsample rates."""
        return math.prod(self.upsample_rates)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a vocoder: saved verbatim inside every checkpoint."""

    mel: MelConfig = MelConfig()
    generator: GeneratorConfig = GeneratorConfig()

    def __post_init__(self) -> None:
        if self.generator.hop_length != self.mel.hop_length:
            raise ConfigError(
                f"the upsample rates {list(self.generator.upsample_rates)} multiply to "
                f"{self.generator.hop_length}, but the mel hop length is {self.mel.hop_length}; "
                "they must be equal"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        try:
            return cls(mel=MelConfig(**data["mel"]), generator=GeneratorConfig(**data["generator"]))
        except (KeyError, TypeError) as err:
            raise ConfigError(f"not a hifigan model config ({err})") from None


V1 = GeneratorConfig()
V2 = dataclasses.replace(V1, upsample_initial_channel=128)
V3 = GeneratorConfig(
    resblock="2",
    upsample_rates=(8, 8, 4),
    upsample_kernel_sizes=(16, 16, 8),
    upsample_initial_channel=256,
    resblock_kernel_sizes=(3, 5, 7),
    resblock_dilation_sizes=((1, 2), (2, 6), (3, 12)),
)
GENERATOR_PRESETS: dict[str, GeneratorConfig] = {"v1": V1, "v2": V2, "v3": V3}


def preset(name: str, mel: MelConfig | None = None) -> ModelConfig:
    """The model config of a named generator preset ("v1", "v2", "v3") at 22.05 kHz."""
    if name not in GENERATOR_PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(GENERATOR_PRESETS)}")
    return ModelConfig(mel=mel or MelConfig(), generator=GENERATOR_PRESETS[name])


def from_original_json(data: dict[str, Any]) -> ModelConfig:
    """Read the original authors' config.json (keys num_mels, hop_size, upsample_rates, ...)."""
    try:
        mel = MelConfig(
            sample_rate=int(data["sampling_rate"]),
            n_fft=int(data["n_fft"]),
            win_length=int(data["win_size"]),
            hop_length=int(data["hop_size"]),
            n_mels=int(data["num_mels"]),
            f_min=float(data["fmin"]),
            f_max=None if data["fmax"] is None else float(data["fmax"]),
        )
        fields = [f.name for f in dataclasses.fields(GeneratorConfig)]
        generator = GeneratorConfig(**{name: data[name] for name in fields})
    except KeyError as err:
        raise ConfigError(f"the config has no {err.args[0]!r} entry") from None
    return ModelConfig(mel=mel, generator=generator)


def to_original_json(config: ModelConfig) -> dict[str, Any]:
    """The original authors' config.json for this model (their training defaults included)."""
    mel = config.mel
    return {
        "resblock": config.generator.resblock, "num_gpus": 0, "batch_size": 16, "learning_rate": 0.0002,
        "adam_b1": 0.8, "adam_b2": 0.99, "lr_decay": 0.999, "seed": 1234,
        **{name: _as_lists(value) for name, value in dataclasses.asdict(config.generator).items() if name != "resblock"},
        "segment_size": 8192, "num_mels": mel.n_mels, "num_freq": mel.n_fft // 2 + 1, "n_fft": mel.n_fft,
        "hop_size": mel.hop_length, "win_size": mel.win_length, "sampling_rate": mel.sample_rate,
        "fmin": mel.f_min, "fmax": mel.f_max, "fmax_for_loss": None, "num_workers": 4,
        "dist_config": {"dist_backend": "nccl", "dist_url": "tcp://localhost:54321", "world_size": 1},
    }


def _as_lists(value: Any) -> Any:
    return [_as_lists(v) for v in value] if isinstance(value, (tuple, list)) else value


# The training settings of the original authors' config.json, by their TrainConfig names (the same).
ORIGINAL_TRAIN_KEYS = ("batch_size", "segment_size", "learning_rate", "adam_b1", "adam_b2", "lr_decay", "seed",
                       "num_workers")


def _read_json_object(path: str | Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read config {path}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} is not a JSON object")
    return data


def _is_native(data: dict[str, Any]) -> bool:
    return "generator" in data and "mel" in data


def load_json_config(path: str | Path) -> ModelConfig:
    """Load a config.json in our format ({"mel", "generator"}) or the original authors' format."""
    data = _read_json_object(path)
    return ModelConfig.from_dict(data) if _is_native(data) else from_original_json(data)


def train_settings_from_json(path: str | Path) -> dict[str, Any]:
    """The training settings an original authors' config.json holds (batch_size, learning_rate, ...) as
    TrainConfig fields; none for our format, whose training settings live in the training config."""
    data = _read_json_object(path)
    if _is_native(data):
        return {}
    if data.get("fmax_for_loss") is not None:
        warnings.warn(f"{path}: fmax_for_loss {data['fmax_for_loss']} is not used: the loss mel is full band, "
                      "as in the published configs (fmax_for_loss null)", stacklevel=2)
    return {key: data[key] for key in ORIGINAL_TRAIN_KEYS if key in data}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation, data and discriminator settings of a training run (reference values by default)."""

    batch_size: int = 16            # per optimiser step, summed over processes and accumulation steps
    segment_size: int = 8192        # audio samples per training crop (a multiple of the hop length)
    learning_rate: float = 2e-4
    adam_b1: float = 0.8
    adam_b2: float = 0.99
    weight_decay: float = 0.01
    lr_decay: float = 0.999
    lr_decay_every: str = "epoch"   # "epoch" (reference) or "step"
    grad_clip: float | None = None  # max gradient norm, None: no clipping
    grad_accum: int = 1
    precision: str = "fp32"         # "fp32", "bf16" (autocast) or "fp16" (autocast + grad scalers)
    seed: int = 1234
    max_steps: int | None = None
    max_epochs: int | None = None
    log_interval: int = 100
    validation_interval: int = 1000
    checkpoint_interval: int = 5000
    keep_last: int = 3
    max_bad_steps: int = 10         # consecutive non-finite losses before the run stops
    num_workers: int = 2
    mpd_periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    mpd_channels: tuple[int, ...] = (32, 128, 512, 1024)
    msd_channels: tuple[int, ...] = (128, 128, 256, 512, 1024, 1024, 1024)
    msd_groups: tuple[int, ...] = (1, 4, 16, 16, 16, 16, 1)

    def __post_init__(self) -> None:
        for name in ("mpd_periods", "mpd_channels", "msd_channels", "msd_groups"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ConfigError(f"precision must be fp32, bf16 or fp16, got {self.precision!r}")
        if self.lr_decay_every not in ("epoch", "step"):
            raise ConfigError(f"lr_decay_every must be 'epoch' or 'step', got {self.lr_decay_every!r}")
        if min(self.batch_size, self.grad_accum, self.segment_size) < 1:
            raise ConfigError("batch_size, grad_accum and segment_size must be positive")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**data)


# Other sample rates, as the published models do: NeMo's 44.1 kHz HiFi-GAN (hop 512, 80 bands,
# full band), BigVGAN's 24 kHz (100 bands to 12 kHz); 16 kHz keeps the reference framing.
SAMPLE_RATE_PRESETS: dict[str, ModelConfig] = {
    "16k": ModelConfig(mel=MelConfig(sample_rate=16000, f_max=8000.0), generator=V1),
    "22k": ModelConfig(),
    "24k": ModelConfig(mel=MelConfig(sample_rate=24000, n_mels=100, f_max=12000.0), generator=V1),
    "44k": ModelConfig(mel=MelConfig(sample_rate=44100, n_fft=2048, win_length=2048, hop_length=512, f_max=None),
                       generator=dataclasses.replace(V1, upsample_rates=(8, 8, 4, 2),
                                                     upsample_kernel_sizes=(16, 16, 4, 4))),
    "48k": ModelConfig(mel=MelConfig(sample_rate=48000, n_fft=2048, win_length=2048, hop_length=512, n_mels=128,
                                     f_max=24000.0),
                       generator=dataclasses.replace(V1, upsample_rates=(8, 8, 4, 2),
                                                     upsample_kernel_sizes=(16, 16, 8, 4))),
}


def model_preset(name: str) -> ModelConfig:
    """"v1"/"v2"/"v3" (22.05 kHz), a rate ("16k", "24k", "44k", "48k") or both ("v2-24k")."""
    generator_name, _, rate = name.partition("-") if name[:1] == "v" else ("v1", "", name)
    if generator_name not in GENERATOR_PRESETS or (rate and rate not in SAMPLE_RATE_PRESETS):
        raise ConfigError(f"unknown preset {name!r}; use v1/v2/v3, {'/'.join(SAMPLE_RATE_PRESETS)} or e.g. v2-24k")
    base = SAMPLE_RATE_PRESETS[rate or "22k"]
    generator = GENERATOR_PRESETS[generator_name]
    if base.mel.hop_length != generator.hop_length:
        if generator_name == "v3":
            raise ConfigError("v3 has three upsampling stages; combine it only with hop-256 rates (16k, 22k, 24k)")
        generator = dataclasses.replace(generator, upsample_rates=base.generator.upsample_rates,
                                        upsample_kernel_sizes=base.generator.upsample_kernel_sizes)
    return ModelConfig(mel=base.mel, generator=generator)
