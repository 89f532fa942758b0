import json

import pytest

from conftest import SHARED, needs_shared
from hifigan.config import (GeneratorConfig, MelConfig, ModelConfig, V1, V2, V3, from_original_json, load_json_config, preset,
                            to_original_json, train_settings_from_json)
from hifigan.errors import ConfigError


def test_presets_and_hop():
    assert preset("v1").generator == V1 and preset("v2").generator == V2 and preset("v3").generator == V3
    assert {V1.hop_length, V2.hop_length, V3.hop_length} == {256}
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("v4")


def test_upsample_product_must_equal_hop():
    with pytest.raises(ConfigError, match="multiply to 256, but the mel hop length is 300"):
        ModelConfig(mel=MelConfig(hop_length=300), generator=V1)


def test_invalid_fields_are_refused():
    with pytest.raises(ConfigError, match="resblock"):
        GeneratorConfig(resblock="3")
    with pytest.raises(ConfigError, match="even"):
        GeneratorConfig(upsample_rates=(8, 8, 2, 2), upsample_kernel_sizes=(15, 16, 4, 4))
    with pytest.raises(ConfigError, match="Nyquist"):
        MelConfig(sample_rate=16000, f_max=9000)


def test_dict_round_trip():
    config = preset("v3")
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@needs_shared(SHARED / "pretrained")
@pytest.mark.parametrize("name,expected", [("v1", V1), ("v2", V2), ("v3", V3)])
def test_original_authors_configs(name, expected):
    config = load_json_config(SHARED / "pretrained" / f"config_{name}.json")
    assert config.generator == expected
    assert config.mel == MelConfig()


def test_original_json_missing_key():
    with pytest.raises(ConfigError, match="the config has no 'n_fft' entry"):
        from_original_json({"sampling_rate": 22050})


def test_training_settings_of_a_config_file(tmp_path):
    original = {**to_original_json(ModelConfig()), "batch_size": 32, "fmax_for_loss": 11025.0}
    (tmp_path / "original.json").write_text(json.dumps(original))
    (tmp_path / "ours.json").write_text(json.dumps(ModelConfig().to_dict()))
    with pytest.warns(UserWarning, match="fmax_for_loss 11025.0 is not used: the loss mel is full band"):
        settings = train_settings_from_json(tmp_path / "original.json")
    assert settings == {"batch_size": 32, "segment_size": 8192, "learning_rate": 0.0002, "adam_b1": 0.8,
                        "adam_b2": 0.99, "lr_decay": 0.999, "seed": 1234, "num_workers": 4}
    assert train_settings_from_json(tmp_path / "ours.json") == {}  # ours keep them in the training config
