import copy
import json
import os

import pytest
import torch

from conftest import LJ_V2, TINY, lively, needs_shared, random_mel
from hifigan.checkpoint import build_generator, infer_generator_config, save_release
from hifigan.formats import load_generator
from hifigan.formats.common import from_legacy_norm
from hifigan.config import MelConfig, ModelConfig, V2
from hifigan.errors import CheckpointError
from hifigan.layers import fold_weight_norm

CONFIG = ModelConfig(mel=MelConfig(), generator=TINY["v1"])


@pytest.fixture(scope="module")
def trained():
    """A tiny weight-normed generator with random g and v (as after training)."""
    return lively(build_generator(CONFIG, weight_norm=True)).eval()


def legacy_keys(state):
    renames = {"parametrizations.weight.original0": "weight_g", "parametrizations.weight.original1": "weight_v"}
    out = {}
    for key, value in state.items():
        for new, old in renames.items():
            key = key.replace(new, old)
        out[key] = value
    return out


def layouts(generator):
    normed = generator.state_dict()
    folded = fold_weight_norm(copy.deepcopy(generator)).state_dict()
    return {
        "original_legacy_weight_norm": {"generator": legacy_keys(normed)},
        "parametrization_keys": {"generator": normed},
        "folded_bare_state_dict": folded,
        "ddp_module_prefix": {"generator": {f"module.{k}": v for k, v in legacy_keys(normed).items()}},
        "nemo_style_prefix": {**{f"generator.{k}": v for k, v in folded.items()}, "mpd.x.weight": torch.zeros(1)},
    }


def output(generator, mel):
    with torch.no_grad():
        return generator(mel)


def test_every_layout_gives_identical_output(trained, tmp_path):
    mel = random_mel(12, batch=2)
    outputs = {}
    for name, obj in layouts(trained).items():
        torch.save(obj, tmp_path / name)
        generator, config = load_generator(tmp_path / name)
        assert config == CONFIG, name
        outputs[name] = output(generator, mel)
    save_release(trained, CONFIG, tmp_path / "native.pt")
    outputs["native"] = output(load_generator(tmp_path / "native.pt")[0], mel)
    reference = outputs.pop("original_legacy_weight_norm")
    assert reference.std() > 0.01
    for name, audio in outputs.items():
        assert torch.equal(audio, reference), name


def test_native_release_is_folded_and_carries_its_config(trained, tmp_path):
    save_release(trained, CONFIG, tmp_path / "model.pt")
    obj = torch.load(tmp_path / "model.pt", weights_only=True)
    assert obj["format"] == "hifigan" and obj["kind"] == "release"
    assert ModelConfig.from_dict(obj["config"]) == CONFIG
    assert not any("parametrizations" in key for key in obj["generator"])
    assert not list(tmp_path.glob("*.part"))


def test_native_strict_key_check(trained, tmp_path):
    save_release(trained, CONFIG, tmp_path / "model.pt")
    obj = torch.load(tmp_path / "model.pt", weights_only=True)
    del obj["generator"]["conv_post.bias"]
    obj["generator"]["extra.weight"] = torch.zeros(1)
    torch.save(obj, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match=r"missing: conv_post.bias; unexpected: extra.weight"):
        load_generator(tmp_path / "broken.pt")


def test_config_json_beside_the_checkpoint_wins(tmp_path):
    config = ModelConfig(mel=MelConfig(), generator=TINY["v3"])
    generator = build_generator(config, weight_norm=True)
    torch.save({"generator": legacy_keys(generator.state_dict())}, tmp_path / "g_00000100")
    original = {"resblock": "2", "upsample_rates": [8, 8, 4], "upsample_kernel_sizes": [16, 16, 8],
                "upsample_initial_channel": 16, "resblock_kernel_sizes": [3, 5, 7],
                "resblock_dilation_sizes": [[1, 2], [2, 6], [3, 12]], "num_mels": 80, "n_fft": 1024,
                "hop_size": 256, "win_size": 1024, "sampling_rate": 22050, "fmin": 0, "fmax": 8000}
    (tmp_path / "config.json").write_text(json.dumps(original))
    assert load_generator(tmp_path / "g_00000100")[1] == config


@pytest.mark.parametrize("name", ["v1", "v3"])
def test_architecture_inferred_from_shapes(name):
    generator = build_generator(ModelConfig(generator=TINY[name]), weight_norm=True)
    state = from_legacy_norm(legacy_keys(generator.state_dict()))
    assert state.keys() == generator.state_dict().keys()
    assert infer_generator_config(state) == (TINY[name], 80)


@needs_shared(LJ_V2)
def test_official_v2_loads_without_a_config():
    generator, config = load_generator(LJ_V2)
    assert config.generator == V2
    assert sum(p.numel() for p in generator.parameters()) == 925_985


def test_truncated_checkpoint(trained, tmp_path):
    torch.save({"generator": trained.state_dict()}, tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or not a PyTorch checkpoint"):
        load_generator(tmp_path / "cut.pt")


def test_text_file_is_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="notes.pt: .*not a"):
        load_generator(tmp_path / "notes.pt")


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"generator": _Exploit(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_generator(tmp_path / "evil.pt")
    assert not marker.exists()


def test_foreign_checkpoint_names_what_was_expected(tmp_path):
    torch.save({"model": {"encoder.weight": torch.zeros(2)}, "epoch": 3}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"not a HiFi-GAN generator checkpoint: expected one of native, original, dle, nemo, torchaudio .* found a dict with keys epoch, model"):
        load_generator(tmp_path / "other.pt")


def test_weights_that_do_not_fit_the_config(trained, tmp_path):
    torch.save({"generator": trained.state_dict()}, tmp_path / "g_00000001")
    (tmp_path / "config.json").write_text(json.dumps(ModelConfig().to_dict()))  # full-width v1
    with pytest.raises(CheckpointError, match="wrong shape: conv_pre"):
        load_generator(tmp_path / "g_00000001")


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_generator(tmp_path / "nothing.pt")


def test_newer_native_version_is_refused(trained, tmp_path):
    save_release(trained, CONFIG, tmp_path / "model.pt")
    obj = torch.load(tmp_path / "model.pt", weights_only=True)
    obj["version"] = 99
    torch.save(obj, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="newer hifigan"):
        load_generator(tmp_path / "future.pt")


def test_numpy_values_in_a_checkpoint_are_data_not_code(trained, tmp_path):
    import numpy as np

    torch.save({"generator": trained.state_dict(), "steps": np.int64(7), "lr": np.float64(1e-4),
                "history": np.zeros(3, dtype=np.float32)}, tmp_path / "g_00000007")
    generator, _ = load_generator(tmp_path / "g_00000007")
    assert sum(p.numel() for p in generator.parameters()) > 0
