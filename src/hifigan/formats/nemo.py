"""NVIDIA NeMo `.nemo` archives of HifiGanModel.

A tar (uncompressed; gzip in old files) holding `model_config.yaml` and `model_weights.ckpt`,
a bare state_dict with `generator.*` (nested resblocks in current NeMo, flat in old), `mpd.*`,
`msd.*` and the mel front ends' buffers. Members are read in memory, never extracted, so an
archive cannot write outside anything.

Files we write load in NeMo with `HifiGanModel.restore_from(path)`: the yaml has the generator,
preprocessor and dataset targets NeMo instantiates, and the weights include discriminators
(NeMo's small `debug` widths, freshly initialised, when the source had none) and mel buffers.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import torch

from ..audio import atomic_path
from ..checkpoint import Checkpoint, TrainingState, config_from_shapes, safe_load_from, weight_normed_state
from ..config import GeneratorConfig, MelConfig, ModelConfig
from ..discriminators import MultiPeriodDiscriminator, MultiScaleDiscriminator
from ..errors import CheckpointError, ConfigError
from .common import (add_prefix, check_training, from_legacy_norm, nest_resblocks, our_generator_state, strip_prefix,
                     tensors_only, to_legacy_norm)

NAME = "nemo"
CONFIG_MEMBER, WEIGHTS_MEMBER = "model_config.yaml", "model_weights.ckpt"
# NeMo's `debug: true` discriminator widths (MPD conv_ch, MSD conv_ch expanded to our 7 layers).
DEBUG_MPD_CHANNELS = (8, 12, 32, 64)
DEBUG_MSD_CHANNELS = (16, 16, 32, 32, 64, 64, 64)
REFERENCE_MSD_CHANNELS = (128, 128, 256, 512, 1024, 1024, 1024)


def is_nemo_archive(path: Path) -> bool:
    try:
        with tarfile.open(path, "r:*") as archive:
            return any(Path(name).name == CONFIG_MEMBER for name in archive.getnames())
    except (tarfile.TarError, OSError, EOFError):
        return False


def _members(path: Path) -> tuple[dict, dict]:
    import yaml

    try:
        with tarfile.open(path, "r:*") as archive:
            found = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}
            if CONFIG_MEMBER not in found or WEIGHTS_MEMBER not in found:
                raise CheckpointError(f"{path}: a .nemo archive needs {CONFIG_MEMBER} and {WEIGHTS_MEMBER}; "
                                      f"found {', '.join(sorted(found)) or 'nothing'}")
            config = yaml.safe_load(archive.extractfile(found[CONFIG_MEMBER]).read())
            weights = safe_load_from(io.BytesIO(archive.extractfile(found[WEIGHTS_MEMBER]).read()), str(path))
    except (tarfile.TarError, EOFError, yaml.YAMLError) as err:
        raise CheckpointError(f"{path}: truncated or broken .nemo archive ({err})") from None
    if not isinstance(config, dict) or not isinstance(weights, dict):
        raise CheckpointError(f"{path}: unexpected .nemo contents")
    return config, weights


def _mel_config(pre: dict, sample_rate: int) -> MelConfig:
    window = pre.get("n_window_size") or int(pre["window_size"] * sample_rate)
    hop = pre.get("n_window_stride") or int(pre["window_stride"] * sample_rate)
    high = pre.get("highfreq")
    return MelConfig(sample_rate=sample_rate, n_fft=int(pre.get("n_fft") or window), win_length=int(window),
                     hop_length=int(hop), n_mels=int(pre.get("nfilt", 80)), f_min=float(pre.get("lowfreq", 0)),
                     f_max=None if high is None else float(high))


def _config(cfg: dict, state: dict, source: str) -> ModelConfig:
    generator, pre = cfg.get("generator"), cfg.get("preprocessor") or {}
    if not isinstance(generator, dict):
        return config_from_shapes(state, source)
    try:
        fields = ("resblock", "upsample_rates", "upsample_kernel_sizes", "upsample_initial_channel",
                  "resblock_kernel_sizes", "resblock_dilation_sizes")
        arch = GeneratorConfig(**{name: generator[name] for name in fields})
        sample_rate = int(pre.get("sample_rate") or cfg.get("sample_rate") or 22050)
        return ModelConfig(mel=_mel_config(pre, sample_rate), generator=arch)
    except (KeyError, TypeError, ValueError, ConfigError) as err:
        raise CheckpointError(f"{source}: invalid model_config.yaml ({err})") from None


def read(path: Path, discriminator: Path | None = None) -> Checkpoint:
    cfg, weights = _members(path)
    weights = tensors_only(weights)
    state = our_generator_state(strip_prefix(weights, "generator."), str(path))
    training = None
    if any(key.startswith("mpd.") for key in weights):
        training = check_training(TrainingState(mpd=from_legacy_norm(strip_prefix(weights, "mpd.")),
                                                msd=from_legacy_norm(strip_prefix(weights, "msd."))), str(path))
    return Checkpoint(generator=state, config=_config(cfg, state, str(path)), training=training)


def _model_config(config: ModelConfig, debug: bool) -> dict[str, Any]:
    mel, generator = config.mel, config.generator
    dataset = {"dataset": {"_target_": "nemo.collections.tts.data.vocoder_dataset.VocoderDataset"},
               "dataloader_params": {"batch_size": 16, "num_workers": 4}}
    return {
        "target": "nemo.collections.tts.models.hifigan.HifiGanModel",
        "sample_rate": mel.sample_rate, "debug": debug, "l1_loss_factor": 45, "denoise_strength": 0.0025,
        "max_steps": 1, "train_ds": dataset, "validation_ds": dataset,
        "generator": {"_target_": "nemo.collections.tts.modules.hifigan_modules.Generator",
                      "resblock": int(generator.resblock), "upsample_rates": list(generator.upsample_rates),
                      "upsample_kernel_sizes": list(generator.upsample_kernel_sizes),
                      "upsample_initial_channel": generator.upsample_initial_channel,
                      "resblock_kernel_sizes": list(generator.resblock_kernel_sizes),
                      "resblock_dilation_sizes": [list(d) for d in generator.resblock_dilation_sizes]},
        "preprocessor": {"_target_": "nemo.collections.asr.parts.preprocessing.features.FilterbankFeatures",
                         "nfilt": mel.n_mels, "lowfreq": mel.f_min, "highfreq": mel.f_max, "n_fft": mel.n_fft,
                         "n_window_size": mel.win_length, "n_window_stride": mel.hop_length, "pad_to": 0,
                         "pad_value": -11.52, "sample_rate": mel.sample_rate, "window": "hann", "normalize": None,
                         "preemph": None, "dither": 0.0, "frame_splicing": 1, "log": True,
                         "log_zero_guard_type": "clamp", "log_zero_guard_value": 1e-05, "mag_power": 1.0,
                         "use_grads": False, "exact_pad": True},
        "optim": {"_target_": "torch.optim.AdamW", "lr": 0.0002, "betas": [0.8, 0.99]},
    }


def _mel_buffers(mel: MelConfig, prefix: str, f_max: float | None) -> dict[str, torch.Tensor]:
    """NeMo FilterbankFeatures buffers: `fb` (1, n_mels, n_fft//2+1) and a symmetric Hann `window`."""
    import librosa

    bank = librosa.filters.mel(sr=mel.sample_rate, n_fft=mel.n_fft, n_mels=mel.n_mels, fmin=mel.f_min, fmax=f_max)
    return {prefix + "fb": torch.from_numpy(bank).float().unsqueeze(0),
            prefix + "window": torch.hann_window(mel.win_length, periodic=False)}


def _discriminator_states(training: TrainingState | None) -> tuple[dict, dict, bool]:
    if training is None:
        mpd = MultiPeriodDiscriminator(channels=DEBUG_MPD_CHANNELS).state_dict()
        msd = MultiScaleDiscriminator(channels=DEBUG_MSD_CHANNELS).state_dict()
        return mpd, msd, True
    first = training.msd.get("discriminators.0.convs.0.parametrizations.weight.original")
    width = None if first is None else first.shape[0]
    if width not in (REFERENCE_MSD_CHANNELS[0], DEBUG_MSD_CHANNELS[0]):
        raise CheckpointError("NeMo only builds discriminators of the reference or its debug widths")
    return training.mpd, training.msd, width == DEBUG_MSD_CHANNELS[0]


def write(checkpoint: Checkpoint, path: Path) -> list[Path]:
    import yaml

    config = checkpoint.config
    mpd, msd, debug = _discriminator_states(checkpoint.training)
    per_stage = len(config.generator.resblock_kernel_sizes)
    generator = nest_resblocks(to_legacy_norm(weight_normed_state(checkpoint.generator)), per_stage)
    weights = {**add_prefix(generator, "generator."), **add_prefix(to_legacy_norm(mpd), "mpd."),
               **add_prefix(to_legacy_norm(msd), "msd."),
               **_mel_buffers(config.mel, "audio_to_melspec_precessor.", config.mel.f_max),
               **_mel_buffers(config.mel, "trg_melspec_fn.", None)}
    buffer = io.BytesIO()
    torch.save({key: value.detach().cpu().contiguous() for key, value in weights.items()}, buffer)
    members = {CONFIG_MEMBER: yaml.safe_dump(_model_config(config, debug), sort_keys=False).encode(),
               WEIGHTS_MEMBER: buffer.getvalue()}
    with atomic_path(path) as tmp, tarfile.open(tmp, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return [path]
