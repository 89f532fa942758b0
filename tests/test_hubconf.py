from pathlib import Path

import torch

from conftest import TINY_V1, lively
from hifigan import Vocoder
from hifigan.checkpoint import build_generator, save_release
from hifigan.config import MelConfig, ModelConfig

REPO = Path(__file__).resolve().parents[1]


def test_hub_entries(tmp_path):
    config = ModelConfig(mel=MelConfig(), generator=TINY_V1)
    save_release(lively(build_generator(config, weight_norm=False)), config, tmp_path / "m.pt")
    vocoder = torch.hub.load(str(REPO), "hifigan", name=str(tmp_path / "m.pt"), source="local")
    assert isinstance(vocoder, Vocoder) and vocoder.sample_rate == 22050
    generator, train_setup, denoiser = torch.hub.load(str(REPO), "nvidia_hifigan", name=str(tmp_path / "m.pt"),
                                                      source="local")
    mel = torch.zeros(2, 80, 12)
    with torch.no_grad():
        audio = generator(mel)
    assert audio.shape == (2, 1, 12 * 256) and float((audio[:, 0] - vocoder(mel)).abs().max()) < 1e-4  # the fast engine vs the plain module
    assert train_setup["sampling_rate"] == 22050 and train_setup["filter_length"] == 1024
    assert denoiser(audio[:, 0], 0.01).shape == (2, 12 * 256)
    random_generator, _, _ = torch.hub.load(str(REPO), "nvidia_hifigan", pretrained=False, name=str(tmp_path / "m.pt"),
                                            source="local")
    with torch.no_grad():
        assert not torch.equal(random_generator(mel), audio)
