import numpy as np
import pytest
import soundfile
import torch

from conftest import TINY_V1, lively
from hifigan.checkpoint import build_generator, save_release
from hifigan.cli import main
from hifigan.config import MelConfig, ModelConfig


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    config = ModelConfig(mel=MelConfig(), generator=TINY_V1)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_release(lively(build_generator(config, weight_norm=False)), config, path)
    return str(path)


@pytest.fixture
def wavs(tmp_path, speechlike):
    folder = tmp_path / "in"
    folder.mkdir()
    soundfile.write(str(folder / "a.wav"), speechlike, 22050)
    soundfile.write(str(folder / "b.flac"), np.stack([speechlike, speechlike], 1), 16000)
    return folder


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_lines(err):
    return [line for line in err.splitlines() if line.startswith("hifigan: error:")]


def test_resynth_folder_with_plots(capsys, tmp_path, wavs, model, speechlike):
    code, _, err = run(capsys, "resynth", wavs, "-o", tmp_path / "out", "--model", model, "--plot")
    assert code == 0, err
    audio, rate = soundfile.read(str(tmp_path / "out" / "a.wav"))
    assert rate == 22050 and len(audio) == len(speechlike) // 256 * 256
    assert soundfile.info(str(tmp_path / "out" / "b.wav")).samplerate == 22050
    png = (tmp_path / "out" / "a.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_vocode_npy_and_pt(capsys, tmp_path, model):
    (tmp_path / "mels").mkdir()
    np.save(tmp_path / "mels" / "one.npy", np.random.default_rng(0).uniform(-9, 1, (80, 12)).astype(np.float32))
    torch.save(torch.rand(1, 80, 7) * 10 - 9, tmp_path / "mels" / "two.pt")
    code, _, err = run(capsys, "vocode", tmp_path / "mels", "-o", tmp_path / "out", "--model", model)
    assert code == 0, err
    assert len(soundfile.read(str(tmp_path / "out" / "one.wav"))[0]) == 12 * 256
    assert len(soundfile.read(str(tmp_path / "out" / "two.wav"))[0]) == 7 * 256


def test_info(capsys, model):
    code, out, _ = run(capsys, "info", model)
    assert code == 0 and "22050 Hz, hop 256" in out and "80 bands, 0-8000 Hz" in out
    code, out, _ = run(capsys, "info", model, "--json")
    import json

    assert json.loads(out)["mel"]["n_mels"] == 80


def test_info_full_band_model(capsys, tmp_path):
    config = ModelConfig(mel=MelConfig(f_max=None), generator=TINY_V1)
    save_release(build_generator(config, weight_norm=False), config, tmp_path / "full.pt")
    code, out, _ = run(capsys, "info", tmp_path / "full.pt")
    assert code == 0 and "0-11025 Hz" in out


def test_one_bad_file_among_many(capsys, tmp_path, wavs, model):
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    code, _, err = run(capsys, "resynth", wavs / "a.wav", tmp_path / "bad.wav", tmp_path / "nope.wav",
                       wavs / "b.flac", "-o", tmp_path / "out", "--model", model)
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 2 and "bad.wav: cannot read audio" in lines[0] and "nope.wav: no such file" in lines[1]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.wav", "b.wav"]


@pytest.mark.parametrize("mel,message", [
    (np.zeros((60, 10), np.float32), "has 60 channels but this model takes 80"),
    (np.zeros((2, 80, 10), np.float32), "must be (n_mels, frames) or (1, n_mels, frames)"),
    (np.full((80, 10), np.nan, np.float32), "NaN or infinite"),
])
def test_bad_mel_files(capsys, tmp_path, model, mel, message):
    np.save(tmp_path / "m.npy", mel)
    code, _, err = run(capsys, "vocode", tmp_path / "m.npy", "-o", tmp_path / "out", "--model", model)
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 1 and message in lines[0] and "m.npy" in lines[0]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize("argv,message", [
    (["info", "no-such-model"], "neither a known model name"),
    (["vocode", "x.npy", "-o", "out", "--model", "lj-v7"], "neither a known model name"),
])
def test_bad_model(capsys, tmp_path, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and message in err


def test_truncated_model(capsys, tmp_path, model):
    data = open(model, "rb").read()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 3])
    code, _, err = run(capsys, "info", tmp_path / "cut.pt")
    assert code == 2 and "truncated" in err and err.count("\n") == 1


def test_unsupported_and_unreadable_inputs(capsys, tmp_path, model):
    (tmp_path / "mel.csv").write_text("1,2,3")
    (tmp_path / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    code, _, err = run(capsys, "vocode", tmp_path / "mel.csv", tmp_path / "broken.npy", "-o", tmp_path / "o",
                       "--model", model)
    lines = error_lines(err)
    assert code == 2 and len(lines) == 2
    assert "unsupported mel file type '.csv'" in lines[0] and "broken.npy: cannot read mel" in lines[1]


def test_empty_and_silent_audio(capsys, tmp_path, model):
    soundfile.write(str(tmp_path / "empty.wav"), np.zeros(0, np.float32), 22050)
    soundfile.write(str(tmp_path / "silent.wav"), np.zeros(22050, np.float32), 22050)
    code, _, err = run(capsys, "resynth", tmp_path / "empty.wav", tmp_path / "silent.wav", "-o", tmp_path / "o",
                       "--model", model)
    assert code == 2 and "empty.wav: the file holds no audio samples" in err
    assert (tmp_path / "o" / "silent.wav").exists() and not (tmp_path / "o" / "empty.wav").exists()


def test_same_output_name_is_refused(capsys, tmp_path, wavs, model):
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.wav").write_bytes((wavs / "a.wav").read_bytes())
    code, _, err = run(capsys, "resynth", wavs / "a.wav", other / "a.wav", "-o", tmp_path / "o", "--model", model)
    assert code == 2 and "would both write" in err and not (tmp_path / "o").exists()


def test_module_entry_point(tmp_path, model):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "hifigan", "info", model], capture_output=True, text=True)
    assert result.returncode == 0 and "parameters:" in result.stdout


def test_convert_and_back(capsys, tmp_path, model):
    code, out, err = run(capsys, "convert", model, tmp_path / "m.nemo", "--to", "nemo")
    assert code == 0 and "wrote" in out, err
    code, out, _ = run(capsys, "convert", tmp_path / "m.nemo", tmp_path / "dle" / "hifigan_gen_checkpoint_1.pt",
                       "--to", "dle")
    assert code == 0
    mel = np.random.default_rng(1).uniform(-9, 1, (80, 9)).astype(np.float32)
    np.save(tmp_path / "x.npy", mel)
    outputs = {}
    for name, path in (("native", model), ("dle", tmp_path / "dle" / "hifigan_gen_checkpoint_1.pt")):
        assert run(capsys, "vocode", tmp_path / "x.npy", "-o", tmp_path / name, "--model", path)[0] == 0
        outputs[name] = soundfile.read(str(tmp_path / name / "x.wav"), dtype="int16")[0]
    assert np.array_equal(outputs["native"], outputs["dle"])


def test_export_cli(capsys, tmp_path, model):
    code, out, _ = run(capsys, "export", model, "--format", "onnx", "-o", tmp_path / "m.onnx")
    assert code == 0 and "max |exported - pytorch| =" in out
    code, out, _ = run(capsys, "export", model, "--format", "torchscript", "-o", tmp_path / "m.ts", "--static-frames", "16")
    assert code == 0 and "1x80x16" in out
    code, _, err = run(capsys, "vocode", tmp_path / "none.npy", "-o", tmp_path / "o", "--model", tmp_path / "m.onnx",
                       "--backend", "onnxruntime")
    assert code == 2 and "none.npy: no such file" in err


def test_vocode_stream_and_denoise_options(capsys, tmp_path, model):
    np.save(tmp_path / "x.npy", np.random.default_rng(2).uniform(-9, 1, (80, 40)).astype(np.float32))
    results = {}
    for name, extra in (("plain", []), ("stream", ["--stream-chunk", "7"]), ("denoised", ["--denoise", "0.05"])):
        code, _, err = run(capsys, "vocode", tmp_path / "x.npy", "-o", tmp_path / name, "--model", model, *extra)
        assert code == 0, err
        results[name] = soundfile.read(str(tmp_path / name / "x.wav"), dtype="int16")[0].astype(int)
    assert np.abs(results["stream"] - results["plain"]).max() <= 4  # 1e-4 in float, rounded to int16
    assert not np.array_equal(results["denoised"], results["plain"])
    for bad, message in ((["--stream-chunk", "0"], "--stream-chunk must be a positive"),
                         (["--denoise", "-1"], "denoise strength must be a finite number >= 0")):
        code, _, err = run(capsys, "vocode", tmp_path / "x.npy", "-o", tmp_path / "bad", "--model", model, *bad)
        assert code == 2 and message in err and err.count("hifigan: error:") == 1


def test_convert_errors(capsys, tmp_path, model):
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 100)
    code, _, err = run(capsys, "convert", tmp_path / "junk.pt", tmp_path / "out.pt", "--to", "dle")
    assert code == 2 and "junk.pt: truncated or not a PyTorch checkpoint" in err and not (tmp_path / "out.pt").exists()
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    code, _, err = run(capsys, "convert", tmp_path / "foreign.pt", tmp_path / "out.pt", "--to", "dle")
    assert code == 2 and "expected one of native, original, dle, nemo, torchaudio" in err and "found a dict with keys weights" in err
