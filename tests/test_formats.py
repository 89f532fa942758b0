"""Every checkpoint format: write -> read -> identical output; conversions between any two."""

import io
import itertools
import tarfile

import pytest
import torch
import yaml

from conftest import TINY, lively, random_mel
from hifigan import formats
from hifigan.checkpoint import Checkpoint, TrainingState, build_generator, generator_from
from hifigan.config import MelConfig, ModelConfig
from hifigan.discriminators import MultiPeriodDiscriminator, MultiScaleDiscriminator
from hifigan.errors import CheckpointError
from hifigan.formats.nemo import DEBUG_MPD_CHANNELS, DEBUG_MSD_CHANNELS

MEL = random_mel(14, batch=2)
SUFFIX = {"native": "model.pt", "original": "g_00001000", "dle": "hifigan_gen_checkpoint_10.pt",
          "nemo": "model.nemo", "torchaudio": "model.pt"}


def tiny_checkpoint(name="v1", normed=True, training=False):
    config = ModelConfig(mel=MelConfig(), generator=TINY[name])
    generator = lively(build_generator(config, weight_norm=normed), seed=3)
    state = None
    if training:
        mpd = lively(MultiPeriodDiscriminator(channels=DEBUG_MPD_CHANNELS), seed=4)
        msd = lively(MultiScaleDiscriminator(channels=DEBUG_MSD_CHANNELS), seed=5)
        state = TrainingState(mpd=mpd.state_dict(), msd=msd.state_dict(), steps=1000, epoch=10,
                              optim_g={"state": {}, "param_groups": [{"lr": 1e-4, "params": [0]}]},
                              optim_d={"state": {}, "param_groups": [{"lr": 1e-4, "params": [0]}]})
    return Checkpoint(generator={k: v.detach() for k, v in generator.state_dict().items()}, config=config,
                      training=state)


def output(checkpoint):
    with torch.no_grad():
        return generator_from(checkpoint)(MEL)


@pytest.mark.parametrize("fmt", formats.FORMATS)
@pytest.mark.parametrize("name", ["v1", "v3"])
def test_write_read_identical_output(tmp_path, fmt, name):
    checkpoint = tiny_checkpoint(name)
    written = formats.write(checkpoint, tmp_path / SUFFIX[fmt], fmt)
    detected, loaded = formats.read(written[0])
    assert detected == fmt
    assert loaded.config == checkpoint.config
    assert torch.equal(output(loaded), output(checkpoint))


@pytest.mark.parametrize("source,target", list(itertools.permutations(formats.FORMATS, 2)))
def test_conversion_between_any_two_formats_is_bit_exact(tmp_path, source, target):
    checkpoint = tiny_checkpoint(normed=source != "torchaudio")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = formats.write(checkpoint, tmp_path / "a" / SUFFIX[source], source)[0]
    second = formats.convert(first, tmp_path / "b" / SUFFIX[target], to=target)[0]
    back = formats.convert(second, tmp_path / "a" / ("back_" + SUFFIX[source]), to=source)[0]
    reference = output(checkpoint)
    for path in (second, back):
        assert torch.equal(output(formats.read(path)[1]), reference), path


@pytest.mark.parametrize("fmt", ["original", "dle", "nemo"])
def test_training_pairs_carry_discriminators_and_optimisers(tmp_path, fmt):
    checkpoint = tiny_checkpoint(training=True)
    written = formats.write(checkpoint, tmp_path / SUFFIX[fmt], fmt)
    _, loaded = formats.read(written[0])
    assert loaded.training is not None
    for ours, theirs in ((checkpoint.training.mpd, loaded.training.mpd), (checkpoint.training.msd, loaded.training.msd)):
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    if fmt != "nemo":  # NeMo keeps optimisers in Lightning checkpoints, not in .nemo files
        assert loaded.training.optim_g == checkpoint.training.optim_g
        assert (loaded.training.steps, loaded.training.epoch) == (1000, 10)


def test_original_pair_layout(tmp_path):
    written = formats.write(tiny_checkpoint(training=True), tmp_path / "g_00001000", "original")
    assert [p.name for p in written] == ["g_00001000", "config.json", "do_00001000"]
    generator = torch.load(written[0], weights_only=True)["generator"]
    assert "conv_pre.weight_g" in generator and "resblocks.11.convs2.2.weight_v" in generator
    do = torch.load(written[2], weights_only=True)
    assert {"mpd", "msd", "optim_g", "optim_d", "steps", "epoch"} <= set(do)
    assert "discriminators.0.convs.0.weight_orig" in do["msd"] and "discriminators.0.convs.0.weight_u" in do["msd"]
    assert "discriminators.1.convs.0.weight_g" in do["msd"]


def test_dle_layout_and_fields(tmp_path):
    written = formats.write(tiny_checkpoint(training=True), tmp_path / "hifigan_gen_checkpoint_10.pt", "dle")
    assert [p.name for p in written] == ["hifigan_gen_checkpoint_10.pt", "hifigan_discrim_checkpoint_10.pt"]
    gen = torch.load(written[0], weights_only=True)
    assert {"generator", "gen_ema", "config", "train_setup", "train_state"} <= set(gen)
    assert "resblocks.3.2.convs1.0.weight_g" in gen["generator"]
    assert gen["config"]["upsample_initial_channel"] == 32 and gen["config"]["resblock"] == "1"
    assert gen["train_setup"]["sampling_rate"] == 22050 and gen["train_setup"]["hop_length"] == 256
    discrim = torch.load(written[1], weights_only=True)
    assert {"mpd", "msd", "optim_g", "optim_d", "scaler_g", "scaler_d", "steps", "epoch"} <= set(discrim)


def test_dle_module_prefix_and_old_flat_keys(tmp_path):
    checkpoint = tiny_checkpoint()
    written = formats.write(checkpoint, tmp_path / "hifigan_gen_checkpoint_1.pt", "dle")[0]
    obj = torch.load(written, weights_only=True)
    obj["generator"] = {f"module.{k}": v for k, v in obj["generator"].items()}
    torch.save(obj, tmp_path / "ddp.pt")
    assert torch.equal(output(formats.read(tmp_path / "ddp.pt")[1]), output(checkpoint))


def test_nemo_archive_contents(tmp_path):
    path = formats.write(tiny_checkpoint("v3"), tmp_path / "m.nemo", "nemo")[0]
    with tarfile.open(path) as archive:
        assert sorted(archive.getnames()) == ["./model_config.yaml", "./model_weights.ckpt"]
        config = yaml.safe_load(archive.extractfile("./model_config.yaml"))
        weights = torch.load(io.BytesIO(archive.extractfile("./model_weights.ckpt").read()), weights_only=True)
    assert config["generator"]["resblock"] == 2 and config["preprocessor"]["n_window_stride"] == 256
    assert config["debug"] is True and config["train_ds"]["dataset"]["_target_"]
    assert "generator.resblocks.2.1.convs.0.weight_g" in weights
    assert weights["audio_to_melspec_precessor.fb"].shape == (1, 80, 513)
    assert weights["trg_melspec_fn.window"].shape == (1024,)
    assert any(key.startswith("mpd.discriminators.4.") for key in weights)


def test_gzipped_nemo_and_flat_old_nemo_keys(tmp_path):
    checkpoint = tiny_checkpoint()
    path = formats.write(checkpoint, tmp_path / "m.nemo", "nemo")[0]
    with tarfile.open(path) as archive:
        members = {m.name: archive.extractfile(m).read() for m in archive.getmembers()}
    weights = torch.load(io.BytesIO(members["./model_weights.ckpt"]), weights_only=True)
    flat = formats.common.flatten_resblocks(formats.common.strip_prefix(weights, "generator."))
    weights = {**{k: v for k, v in weights.items() if not k.startswith("generator.")},
               **formats.common.add_prefix(flat, "generator.")}
    buffer = io.BytesIO()
    torch.save(weights, buffer)
    members["./model_weights.ckpt"] = buffer.getvalue()
    with tarfile.open(tmp_path / "old.nemo", "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    with open(tmp_path / "old.nemo", "rb") as handle:
        assert handle.read(2) == b"\x1f\x8b"
    name, loaded = formats.read(tmp_path / "old.nemo")
    assert name == "nemo" and torch.equal(output(loaded), output(checkpoint))


def test_discriminator_file_alone_is_explained(tmp_path):
    written = formats.write(tiny_checkpoint(training=True), tmp_path / "g_00001000", "original")
    with pytest.raises(CheckpointError, match="discriminator half of a training pair"):
        formats.read(written[2])


def test_broken_nemo_archive(tmp_path):
    with tarfile.open(tmp_path / "x.nemo", "w") as archive:
        data = b"generator: {}\n"
        info = tarfile.TarInfo("./model_config.yaml")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    with pytest.raises(CheckpointError, match="needs model_config.yaml and model_weights.ckpt; found model_config.yaml"):
        formats.read(tmp_path / "x.nemo")


def test_unknown_target_format(tmp_path):
    with pytest.raises(CheckpointError, match="unknown format 'onnx'"):
        formats.write(tiny_checkpoint(), tmp_path / "x", "onnx")


def test_mismatched_discriminator_file(tmp_path):
    written = formats.write(tiny_checkpoint(training=True), tmp_path / "g_00001000", "original")
    do = torch.load(written[2], weights_only=True)
    do["mpd"]["discriminators.0.convs.1.bias"] = torch.zeros(3)
    torch.save(do, written[2])
    with pytest.raises(CheckpointError, match=r"do_00001000 \(mpd\): weights do not fit the model \(wrong shape"):
        formats.read(written[0])
