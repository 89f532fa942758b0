import copy
import dataclasses
import json
import os
import signal
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from conftest import LJ_V2, LJ_WAVS, needs_shared
from hifigan import formats
from hifigan.checkpoint import Checkpoint, TrainingState
from hifigan.cli import _report_stop, main
from hifigan.config import V1, MelConfig, ModelConfig, TrainConfig
from hifigan.data import Example, audio_files, collate
from hifigan.device import cpu_bf16_supported
from hifigan.errors import CheckpointError, InputError
from hifigan.formats.common import to_legacy_norm
from hifigan.train.run import TrainingInterrupted, export_generator, read_training_checkpoint, train
from hifigan.train.trainer import RunState, Trainer, TrainingDiverged

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from reference_training import ReferenceStep  # noqa: E402  (the original train.py's step)

MODEL = ModelConfig(mel=MelConfig(), generator=dataclasses.replace(V1, upsample_initial_channel=16))
# Depthwise MSD convs (16 channels in 16 groups) at k = 41: in the fp16 test they take the
# fp32 detour around oneDNN's fp16 depthwise hang (layers.hangs_in_cpu_fp16).
TINY_D = dict(mpd_channels=(4, 8, 8, 16), msd_channels=(16,) * 7)
BASE = TrainConfig(batch_size=4, segment_size=2048, num_workers=0, log_interval=1, checkpoint_interval=1000,
                   validation_interval=1000, **TINY_D)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    for i in range(8):
        t = np.arange(int(0.5 * 22050)) / 22050
        f0 = 110 + 20 * i
        audio = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8)) + 0.05 * rng.standard_normal(t.size)
        soundfile.write(str(folder / f"clip{i}.wav"), (0.4 * audio / np.abs(audio).max()).astype(np.float32), 22050)
    return [Example(p) for p in audio_files(folder)]


def weights(run_dir):
    obj = read_training_checkpoint(run_dir)
    return {name: obj[name] for name in ("generator", "mpd", "msd")}, obj


def assert_same(a, b, atol=0.0):
    for part in a:
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            if atol:
                assert torch.allclose(a[part][key], b[part][key], atol=atol), (part, key)
            else:
                assert torch.equal(a[part][key], b[part][key]), (part, key)


def run(tmp_path, name, clips, resume=None, **settings):
    config = dataclasses.replace(BASE, **settings)
    train(MODEL, config, tmp_path / name, clips, device="cpu", resume=resume, progress=False,
          overrides=settings if resume else None)
    return tmp_path / name


def test_losses_finite_and_mel_loss_falls_on_a_fixed_batch(clips, tmp_path):
    trainer = Trainer(MODEL, dataclasses.replace(BASE, learning_rate=2e-3), tmp_path, clips, progress=False)
    batch = collate([trainer.train_set[i] for i in range(4)])
    history = [trainer.train_step([batch]) for _ in range(20)]
    assert all(math_finite(h) for h in history)
    first, last = np.mean([h["mel"].item() for h in history[:3]]), np.mean([h["mel"].item() for h in history[-3:]])
    assert last < 0.8 * first, (first, last)


def test_training_steps_match_the_original_recipe(clips, tmp_path):
    """Three steps of the Trainer against the original train.py's step written plainly
    (benchmarks/reference_training.py): same losses, weights and spectral-norm state."""
    trainer = Trainer(MODEL, BASE, tmp_path, clips, progress=False)
    reference = ReferenceStep(trainer)
    batch = collate([trainer.train_set[i] for i in range(4)])
    for _ in range(3):
        ours = trainer.train_step([batch])
        theirs = reference(batch)
        assert [ours["loss_d"].item(), ours["loss_g"].item()] == pytest.approx(theirs, rel=1e-6)
    pairs = [(trainer.generator, reference.generator), (trainer.mpd, reference.mpd), (trainer.msd, reference.msd)]
    for a, b in pairs:  # Adam turns float noise in tiny gradients into ~1e-4 relative differences
        ours = to_legacy_norm(a.state_dict()) if b is not reference.generator else a.state_dict()
        assert ours.keys() == b.state_dict().keys()
        for key, value in b.state_dict().items():
            assert (ours[key] - value).abs().max() <= 1e-3 * value.abs().max() + 1e-7, key


def math_finite(metrics):
    return all(torch.isfinite(value) for value in metrics.values())


def test_gradient_accumulation_equals_a_larger_batch(clips, tmp_path):
    whole = run(tmp_path, "whole", clips, max_steps=1)
    accumulated = run(tmp_path, "accumulated", clips, max_steps=1, grad_accum=2)
    assert_same(weights(whole)[0], weights(accumulated)[0], atol=1e-5)


@pytest.mark.parametrize("stop", [1, 2])  # mid-epoch and at an epoch boundary (2 steps per epoch)
def test_interrupted_and_resumed_equals_uninterrupted(clips, tmp_path, stop):
    straight = run(tmp_path, "straight", clips, max_steps=3)
    run(tmp_path, "interrupted", clips, max_steps=stop)
    resumed = run(tmp_path, "interrupted", clips, resume=tmp_path / "interrupted", max_steps=3)
    (a, obj_a), (b, obj_b) = weights(straight), weights(resumed)
    assert_same(a, b)
    assert obj_a["state"] == obj_b["state"] and obj_a["optim_g"]["state"].keys() == obj_b["optim_g"]["state"].keys()


def test_a_signal_stops_after_the_step_and_the_run_resumes_exactly(clips, tmp_path, monkeypatch):
    """SIGTERM arrives during step 2 (of 3): the step finishes, a checkpoint is written there, the
    run raises TrainingInterrupted, and --resume reaches the uninterrupted weights."""
    straight = run(tmp_path, "straight", clips, max_steps=3)
    step = Trainer.train_step

    def train_step(trainer, batches):
        if trainer.state.step == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # handled between bytecodes: mid-step
        return step(trainer, batches)

    monkeypatch.setattr(Trainer, "train_step", train_step)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted, match="SIGTERM: stopped after step 2 with a checkpoint in") as stop:
        train(MODEL, dataclasses.replace(BASE, max_steps=3), tmp_path / "stopped", clips, progress=False,
              stop_on_signals=True)
    assert stop.value.signum == signal.SIGTERM and signal.getsignal(signal.SIGTERM) is before
    assert read_training_checkpoint(tmp_path / "stopped")["state"]["step"] == 2
    monkeypatch.setattr(Trainer, "train_step", step)
    resumed = run(tmp_path, "stopped", clips, resume=tmp_path / "stopped", max_steps=3)
    assert_same(weights(straight)[0], weights(resumed)[0])


def test_resume_from_an_original_authors_pair(clips, tmp_path):
    straight = run(tmp_path, "straight", clips, max_steps=3)
    run(tmp_path, "two", clips, max_steps=2)
    _, obj = weights(tmp_path / "two")
    pair = Checkpoint(generator=obj["generator"], config=MODEL, training=TrainingState(
        mpd=obj["mpd"], msd=obj["msd"], optim_g=obj["optim_g"], optim_d=obj["optim_d"],
        steps=obj["state"]["step"], epoch=obj["state"]["epoch"]))
    written = formats.write(pair, tmp_path / "orig" / "g_00000002", "original")
    assert [p.name for p in written] == ["g_00000002", "config.json", "do_00000002"]
    resumed = run(tmp_path, "from_original", clips, resume=written[0], max_steps=3)
    assert_same(weights(straight)[0], weights(resumed)[0])
    lone = formats.write(dataclasses.replace(pair, training=None), tmp_path / "lone" / "g_00000002", "original")
    with pytest.warns(UserWarning, match="g_00000002 has no training state beside it .* only the generator"):
        run(tmp_path, "from_lone", clips, resume=lone[0], max_steps=1)
    # Their checkpoint folder, as their train.py resumes: the latest g_ (an older pair beside it).
    older = dataclasses.replace(pair, training=dataclasses.replace(pair.training, steps=1))
    formats.write(older, tmp_path / "orig" / "g_00000001", "original")
    from_folder = run(tmp_path, "from_folder", clips, resume=tmp_path / "orig", max_steps=3)
    assert_same(weights(straight)[0], weights(from_folder)[0])


def _as_torch1_adamw(state: dict) -> dict:
    """An AdamW state as torch 1.x saved it (the original authors' do_ files): integer steps and
    none of the later param-group keys. Its tensors are copies, as read from a file: a live state's
    tensors would be shared with the optimiser that loads it."""
    later = ("fused", "foreach", "capturable", "differentiable", "maximize", "decoupled_weight_decay")
    state = copy.deepcopy(state)
    return {"state": {i: {**s, "step": int(s["step"])} for i, s in state["state"].items()},
            "param_groups": [{k: v for k, v in g.items() if k not in later} for g in state["param_groups"]]}


def test_a_torch1_optimizer_state_loads_with_this_runs_fused_update(clips, tmp_path):
    source = Trainer(MODEL, BASE, tmp_path / "source", clips, progress=False)
    batch = collate([source.train_set[i] for i in range(4)])
    source.train_step([batch])
    pair = TrainingState(mpd=source.mpd.state_dict(), msd=source.msd.state_dict(), steps=1, epoch=0,
                         optim_g=_as_torch1_adamw(source.optim_g.state_dict()),
                         optim_d=_as_torch1_adamw(source.optim_d.state_dict()))
    target = Trainer(MODEL, BASE, tmp_path / "target", clips, progress=False)
    target.load_pair(pair, source.generator.state_dict())
    groups = target.optim_g.param_groups + target.optim_d.param_groups
    assert all(g["fused"] and g["decoupled_weight_decay"] and g["lr"] == BASE.learning_rate for g in groups)
    source.train_step([batch])
    target.train_step([batch])  # continues exactly where the source is
    for a, b in zip(source.generator.parameters(), target.generator.parameters()):
        assert torch.equal(a, b)


def test_an_optimizer_state_for_other_parameters_is_refused(clips, tmp_path):
    trainer = Trainer(MODEL, BASE, tmp_path, clips, progress=False)
    state = _as_torch1_adamw(trainer.optim_d.state_dict())
    state["param_groups"][0]["params"] = state["param_groups"][0]["params"][:-1]
    pair = TrainingState(mpd=trainer.mpd.state_dict(), msd=trainer.msd.state_dict(), steps=1, epoch=0,
                         optim_g=trainer.optim_g.state_dict(), optim_d=state)
    with pytest.raises(CheckpointError, match="optimiser state covers .* parameters, this model has"):
        trainer.load_pair(pair, trainer.generator.state_dict())


def test_divergence_guard_stops_and_keeps_the_last_good_checkpoint(clips, tmp_path, monkeypatch):
    import hifigan.train.trainer as trainer_module

    run(tmp_path, "run", clips, max_steps=1)
    monkeypatch.setattr(trainer_module, "discriminator_loss", lambda real, fake: real[0][0].sum() * float("nan"))
    with pytest.raises(TrainingDiverged, match="3 consecutive steps had a non-finite discriminator loss"):
        run(tmp_path, "run", clips, resume=tmp_path / "run", max_steps=10, max_bad_steps=2)
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["train_00000001.pt"]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_steps(clips, tmp_path, precision, monkeypatch):
    monkeypatch.setattr("hifigan.train.trainer.cpu_bf16_slower_than_fp32", lambda: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        folder = run(tmp_path, precision, clips, max_steps=2, precision=precision)
    slow = [str(w.message) for w in caught if "precision fp32 is faster here" in str(w.message)]
    assert len(slow) == (precision == "fp16" or not cpu_bf16_supported())
    assert all("fp16 training on the CPU" in message for message in slow) or precision == "bf16"
    assert not [w for w in caught if "lr_scheduler.step()" in str(w.message)]  # skipped fp16 steps are expected
    _, obj = weights(folder)
    assert obj["state"]["step"] == 2 and all(torch.isfinite(v).all() for v in obj["generator"].values())
    records = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss_g"]) and np.isfinite(r["mel"]) for r in records if "loss_g" in r)
    if precision == "fp16":
        assert obj["scaler_g"] and obj["scaler_d"]  # separate scalers, saved for resume


@pytest.mark.parametrize("precision,native,slower,expected", [
    ("fp32", False, False, None), ("bf16", True, False, None),
    ("bf16", True, True, "bf16 trains slower than fp32"), ("bf16", False, False, "no native bf16"),
    ("fp16", True, False, "slow fp16 convolution backward"),
])
def test_precisions_slower_than_fp32_on_this_cpu_are_named(monkeypatch, precision, native, slower, expected):
    import hifigan.train.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "cpu_bf16_supported", lambda: native)
    monkeypatch.setattr(trainer_module, "cpu_bf16_slower_than_fp32", lambda: slower)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer_module._warn_if_slow_on_cpu(precision)
    messages = [str(w.message) for w in caught]
    assert len(messages) == (expected is not None)
    assert expected is None or (expected in messages[0] and messages[0].endswith("precision fp32 is faster here"))


def test_logs_checkpoints_and_export(clips, tmp_path):
    folder = run(tmp_path, "logged", clips, max_steps=4, checkpoint_interval=1, keep_last=2, validation_interval=2)
    assert [p.name for p in sorted((folder / "checkpoints").iterdir())] == ["train_00000003.pt", "train_00000004.pt"]
    records = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss_g" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert {"loss_d", "loss_g", "adversarial", "feature_matching", "mel", "lr", "frames_per_s", "step_time"} <= set(steps[0])
    assert (folder / "tensorboard").is_dir() and any((folder / "tensorboard").iterdir())
    from hifigan import Vocoder

    vocoder = Vocoder.from_pretrained(export_generator(folder, tmp_path / "model.pt"))
    assert vocoder.config == MODEL and vocoder(torch.zeros(80, 3)).shape == (1, 768)


def test_validation_compares_vocoded_and_real_audio_on_both_mels(clips, tmp_path):
    """Fine-tuning pairs: the generator reads the given mel, the errors compare against the real
    audio's 8 kHz and full-band mels (the original train.py's validation uses the latter)."""
    (tmp_path / "mels").mkdir()
    trainer = Trainer(MODEL, BASE, tmp_path / "run", [], progress=False)
    for clip in clips[:2]:
        audio, _ = soundfile.read(str(clip.audio), dtype="float32")
        mel = trainer.input_mel(torch.from_numpy(audio)) + 0.5  # an acoustic model's mel, off by 0.5
        np.save(tmp_path / "mels" / f"{clip.audio.stem}.npy", mel.numpy())
    pairs = [Example(clip.audio, tmp_path / "mels" / f"{clip.audio.stem}.npy") for clip in clips[:2]]
    trainer = Trainer(MODEL, BASE, tmp_path / "run", [], pairs, progress=False)
    expected = {"val_mel_l1": [], "val_mel_l1_full": []}
    with torch.no_grad():
        for pair in pairs:
            audio = torch.from_numpy(soundfile.read(str(pair.audio), dtype="float32")[0])
            audio = audio[: len(audio) // 256 * 256]
            generated = trainer.generator.eval()(torch.from_numpy(np.load(pair.mel))[None])[0, 0]
            for name, mel_of in (("val_mel_l1", trainer.input_mel), ("val_mel_l1_full", trainer.loss_mel)):
                expected[name].append(float((mel_of(generated) - mel_of(audio)).abs().mean()))
    errors = trainer.validate()
    assert errors == pytest.approx({name: np.mean(values) for name, values in expected.items()}, rel=1e-5)
    assert trainer.generator.training
    record = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[-1])
    assert record == {"step": 0, **errors}


def test_the_last_step_is_logged_between_intervals(clips, tmp_path):
    folder = run(tmp_path, "sparse", clips, max_steps=3, log_interval=2)
    records = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss_g" in r] == [2, 3]


def test_persistent_loader_workers_crop_each_epoch_as_the_main_process_does(clips, tmp_path):
    """The loader's workers live for the whole run (forked once), so they never see set_epoch: each
    key carries its epoch. Their batches equal those loaded in the main process, epoch after epoch."""
    def epochs(workers):
        trainer = Trainer(MODEL, dataclasses.replace(BASE, num_workers=workers), tmp_path / f"w{workers}", clips,
                          progress=False)
        audio = []
        for epoch in range(3):
            trainer.state.epoch = epoch
            audio += [batch["audio"] for batch in trainer._epoch_batches()]
        return audio, trainer._train_loader

    in_main, _ = epochs(0)
    in_workers, loader = epochs(2)
    assert loader.persistent_workers and len(in_main) == len(in_workers) == 6
    assert all(torch.equal(a, b) for a, b in zip(in_main, in_workers))
    assert not torch.equal(in_main[0], in_main[2])  # epochs crop differently


def test_a_run_whose_clips_all_fail_to_load_stops_with_a_message(tmp_path, caplog):
    missing = [Example(tmp_path / f"gone{i}.wav") for i in range(4)]
    trainer = Trainer(MODEL, dataclasses.replace(BASE, max_steps=5), tmp_path / "run", missing, progress=False)
    with pytest.raises(InputError, match="no batch of epoch 0 could be loaded: every training clip was skipped"):
        trainer.fit()
    assert "gone0.wav: no such file" in caplog.text and trainer.state.step == 1
    assert "step 1: no clip of its batch could be loaded; nothing trained" in caplog.text
    assert trainer.state.skipped_total == 1  # logged as skipped_steps
    many = [Example(tmp_path / f"gone{i}.wav") for i in range(40)]  # the run ends inside the first epoch
    trainer = Trainer(MODEL, dataclasses.replace(BASE, max_steps=2), tmp_path / "run2", many, progress=False)
    with pytest.raises(InputError, match="none of the 2 steps' batches could be loaded"):
        trainer.fit()


def test_process_settings_by_device(monkeypatch):
    """CUDA runs let cuDNN pick its fastest algorithms (as the reference's train.py); CPU runs keep freed
    memory only when asked."""
    from hifigan.train import run as run_module

    calls = []
    monkeypatch.setattr(run_module, "tune_heap_for_training", lambda: calls.append("malloc"))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    run_module._tune_process(torch.device("cpu"), tune_malloc=False)
    assert calls == [] and not torch.backends.cudnn.benchmark
    run_module._tune_process(torch.device("cpu"), tune_malloc=True)
    assert calls == ["malloc"] and not torch.backends.cudnn.benchmark
    run_module._tune_process(torch.device("cuda", 0), tune_malloc=True)
    assert calls == ["malloc"] and torch.backends.cudnn.benchmark


def test_cli_train_and_refusals(clips, tmp_path, capsys, monkeypatch):
    (tmp_path / "model.json").write_text(json.dumps(MODEL.to_dict()))
    (tmp_path / "train.json").write_text(json.dumps({**dataclasses.asdict(BASE), "max_steps": 1}))
    data = str(clips[0].audio.parent)
    args = ["train", "--data", data, "--run-dir", str(tmp_path / "cli"), "--config", str(tmp_path / "model.json"),
            "--train-config", str(tmp_path / "train.json")]
    assert main(args) == 0
    assert f"stopped at step 1, epoch 1; checkpoints in {tmp_path / 'cli'}/checkpoints" in capsys.readouterr().out
    monkeypatch.setenv("RANK", "1")  # under torchrun only rank 0 says it
    assert _report_stop(RunState(step=1), "x") == 0
    assert capsys.readouterr().out == ""
    monkeypatch.delenv("RANK")
    auto = [*args[:3], "--run-dir", str(tmp_path / "auto"), *args[5:], "--resume"]  # a job that restarts itself
    assert main(auto) == 0 and "no checkpoint in" in capsys.readouterr().err
    assert main([*auto, "--max-steps", "2"]) == 0 and "no checkpoint" not in capsys.readouterr().err
    assert read_training_checkpoint(tmp_path / "auto")["state"]["step"] == 2
    assert main(["export-generator", str(tmp_path / "cli"), "-o", str(tmp_path / "g.pt")]) == 0
    (tmp_path / "bad.json").write_text(json.dumps({**MODEL.to_dict(), "mel": {**MODEL.to_dict()["mel"], "hop_length": 300}}))
    capsys.readouterr()
    assert main([*args[:5], "--config", str(tmp_path / "bad.json")]) == 2
    assert "multiply to 256, but the mel hop length is 300" in capsys.readouterr().err
    assert main([*args, "--batch-size", "3", "--grad-accum", "2"]) == 2
    assert "not divisible" in capsys.readouterr().err
    assert main(args) == 2  # a new run in the folder of another
    assert "cli already holds a run (latest checkpoint train_00000001.pt): pass --resume" in capsys.readouterr().err
    fresh = [*args[:3], "--run-dir", str(tmp_path / "fresh"), *args[5:]]
    assert main([*fresh, "--batch-size", "16"]) == 2
    assert "training file(s), fewer than one batch (16): add files or lower the batch size" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([*fresh[:2], str(tmp_path / "empty"), *fresh[3:]]) == 2
    assert "empty: no audio files (.wav, .flac, .ogg) in this folder or below" in capsys.readouterr().err
    (tmp_path / "endless.json").write_text(json.dumps(dataclasses.asdict(BASE)))
    assert main([*fresh[:7], "--train-config", str(tmp_path / "endless.json")]) == 2
    assert "set max_steps or max_epochs (--max-steps / --max-epochs)" in capsys.readouterr().err


def test_the_original_config_json_brings_its_training_settings(clips, tmp_path):
    """--config with the original authors' config.json: its batch size, segment, learning rate, betas,
    decay, seed and workers set the run (below --train-config and the command line)."""
    from hifigan.config import to_original_json

    original = {**to_original_json(MODEL), "batch_size": 2, "segment_size": 1024, "learning_rate": 5e-4,
                "adam_b1": 0.7, "adam_b2": 0.95, "lr_decay": 0.99, "seed": 7, "num_workers": 4}
    (tmp_path / "config.json").write_text(json.dumps(original))
    (tmp_path / "tc.json").write_text(json.dumps({**TINY_D, "max_steps": 1, "seed": 9}))
    assert main(["train", "--data", str(clips[0].audio.parent), "--run-dir", str(tmp_path / "run"), "--config",
                 str(tmp_path / "config.json"), "--train-config", str(tmp_path / "tc.json"), "--num-workers", "0"]) == 0
    settings = read_training_checkpoint(tmp_path / "run")["train_config"]
    assert {key: settings[key] for key in ("batch_size", "segment_size", "learning_rate", "adam_b1", "adam_b2",
                                           "lr_decay", "seed", "num_workers")} == {
        "batch_size": 2, "segment_size": 1024, "learning_rate": 5e-4, "adam_b1": 0.7, "adam_b2": 0.95,
        "lr_decay": 0.99, "seed": 9, "num_workers": 0}


def test_an_interrupted_finetune_resumes_on_its_mels(clips, tmp_path, caplog):
    """`finetune --resume` continues the fine-tuning run exactly: same mel pairs, same state."""
    from hifigan.checkpoint import build_generator, save_release

    save_release(build_generator(MODEL, weight_norm=True), MODEL, tmp_path / "init.pt")
    (tmp_path / "mels").mkdir()
    rng = np.random.default_rng(0)
    for clip in clips:
        frames = soundfile.info(str(clip.audio)).frames // 256
        np.save(tmp_path / "mels" / f"{clip.audio.stem}.npy", rng.normal(-5, 2, (80, frames)).astype(np.float32))
    (tmp_path / "tc.json").write_text(json.dumps({**dataclasses.asdict(BASE), "max_steps": 2}))
    common = ["finetune", "--init", str(tmp_path / "init.pt"), "--mels", str(tmp_path / "mels"),
              "--data", str(clips[0].audio.parent), "--train-config", str(tmp_path / "tc.json")]
    assert main([*common, "--run-dir", str(tmp_path / "straight")]) == 0
    assert main([*common, "--run-dir", str(tmp_path / "cut"), "--max-steps", "1"]) == 0
    assert main([*common, "--run-dir", str(tmp_path / "cut"), "--resume"]) == 0  # its max_steps is 1
    assert "the run is already at its end (step 1, epoch 1; max_steps 1" in caplog.text
    assert main([*common, "--run-dir", str(tmp_path / "cut"), "--resume", "--max-steps", "2"]) == 0
    (a, obj_a), (b, obj_b) = weights(tmp_path / "straight"), weights(tmp_path / "cut")
    assert_same(a, b)
    assert obj_a["state"] == obj_b["state"] and obj_b["state"]["step"] == 2


@needs_shared(LJ_V2)
@needs_shared(LJ_WAVS)
def test_finetune_from_official_v2_does_not_blow_up(tmp_path):
    from hifigan import Vocoder

    clips = sorted(LJ_WAVS.glob("*.wav"))[:6]
    vocoder = Vocoder.from_pretrained(LJ_V2)
    (tmp_path / "mels").mkdir()
    for clip in clips:  # ground-truth-aligned mels stand in for an acoustic model's output
        audio, _ = soundfile.read(str(clip), dtype="float32")
        np.save(tmp_path / "mels" / f"{clip.stem}.npy", vocoder.mel_spectrogram(audio))

    def resynthesis_l1(v):
        losses = []
        for clip in clips[:3]:
            audio, _ = soundfile.read(str(clip), dtype="float32")
            mel = v.mel_spectrogram(audio)
            losses.append(float(np.abs(v.mel_spectrogram(v(mel)[0]) - mel).mean()))
        return np.mean(losses)

    before = resynthesis_l1(vocoder)
    args = ["finetune", "--init", str(LJ_V2), "--mels", str(tmp_path / "mels"), "--data", str(LJ_WAVS),
            "--train-list", str(tmp_path / "list.txt"), "--run-dir", str(tmp_path / "ft"), "--batch-size", "2",
            "--segment-size", "8192", "--max-steps", "3", "--lr", "1e-5", "--num-workers", "0",
            "--train-config", str(tmp_path / "tc.json")]
    (tmp_path / "list.txt").write_text("".join(f"{c.stem}|x\n" for c in clips))
    (tmp_path / "tc.json").write_text(json.dumps(TINY_D))
    assert main(args) == 0
    after = resynthesis_l1(Vocoder.from_pretrained(export_generator(tmp_path / "ft", tmp_path / "ft.pt")))
    assert after < before + 0.03, (before, after)


def test_gradient_clipping_is_applied(clips, tmp_path, monkeypatch):
    calls = []
    original = torch.nn.utils.clip_grad_norm_

    def spy(parameters, max_norm, *args, **kwargs):
        calls.append(max_norm)
        return original(parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    run(tmp_path, "clipped", clips, max_steps=1, grad_clip=0.5)
    assert calls == [0.5, 0.5]  # discriminators, then generator
