"""Shared fixtures: tiny models, synthetic audio, and the ../shared material (skipped if absent)."""

from __future__ import annotations

import dataclasses
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch

from hifigan import pretrained
from hifigan.checkpoint import build_generator
from hifigan.config import V1, V3, MelConfig, ModelConfig

SHARED = Path(__file__).resolve().parents[2] / "shared"
LJ_WAVS = SHARED / "data" / "ljspeech" / "wavs"
LJ_V2 = SHARED / "pretrained" / "lj_v2_generator.pt"

# Tiny generators with the real topologies (v1/v2 shape and v3 shape), for fast tests.
TINY_V1 = dataclasses.replace(V1, upsample_initial_channel=32)
TINY_V3 = dataclasses.replace(V3, upsample_initial_channel=16)
TINY = {"v1": TINY_V1, "v3": TINY_V3}


try:
    WEIGHTS = metadata.distribution(pretrained.WEIGHTS_DISTRIBUTION)
except metadata.PackageNotFoundError:
    WEIGHTS = None
needs_weights = pytest.mark.skipif(WEIGHTS is None, reason="the extra hifigan[pretrained] is not installed")


def needs_shared(path: Path) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not path.exists(), reason=f"{path} is absent (../shared is not checked out beside the repo)")


@pytest.fixture
def tiny_config() -> ModelConfig:
    return ModelConfig(mel=MelConfig(), generator=TINY_V1)


@pytest.fixture
def tiny_generator(tiny_config):
    torch.manual_seed(0)
    return build_generator(tiny_config, weight_norm=True).eval()


@pytest.fixture
def speechlike() -> np.ndarray:
    """1.2 s of a harmonic tone with vibrato and noise at 22050 Hz, peak 0.5."""
    rng = np.random.default_rng(0)
    t = np.arange(int(1.2 * 22050)) / 22050
    f0 = 140 + 20 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 22050
    audio = sum(np.sin(k * phase) / k for k in range(1, 12)) + 0.05 * rng.standard_normal(t.size)
    return (0.5 * audio / np.abs(audio).max()).astype(np.float32)


def random_mel(frames: int, n_mels: int = 80, seed: int = 0, batch: int | None = None) -> torch.Tensor:
    """A plausible log-mel: values between silence (-11.5) and about 1."""
    generator = torch.Generator().manual_seed(seed)
    shape = (n_mels, frames) if batch is None else (batch, n_mels, frames)
    return torch.rand(shape, generator=generator) * 10 - 9


def lively(model: torch.nn.Module, seed: int = 0, gain: float = 1.0) -> torch.nn.Module:
    """Redraw every parameter with fan-in scaling, so a tiny untrained model has a varied output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            fan_in = parameter[0].numel() if parameter.dim() > 1 else 1
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * gain / fan_in ** 0.5)
    return model
