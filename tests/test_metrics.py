import json
import math

import librosa
import numpy as np
import pytest
import soundfile
import soxr
import torch
from pesq import pesq
from pystoi import stoi

from conftest import LJ_V2, LJ_WAVS, needs_shared
from hifigan import Vocoder, metrics
from hifigan.checkpoint import build_generator
from hifigan.evaluation import evaluate, markdown_table, read_id_list
from test_mel import reference_log_mel


@pytest.fixture(scope="module")
def pair(speechlike_module):
    """A fixed (reference, degraded) pair: speech-like tone vs a filtered, noisier, pitch-shifted copy."""
    rng = np.random.default_rng(1)
    reference = speechlike_module
    shifted = librosa.effects.pitch_shift(reference, sr=22050, n_steps=0.5)
    degraded = (0.8 * shifted + 0.02 * rng.standard_normal(len(reference))).astype(np.float32)
    return reference, degraded


@pytest.fixture(scope="module")
def speechlike_module():
    rng = np.random.default_rng(0)
    t = np.arange(int(2.0 * 22050)) / 22050
    envelope = (np.sin(2 * np.pi * 1.5 * t) > -0.3).astype(float)  # voiced stretches and pauses
    phase = 2 * np.pi * np.cumsum(130 + 25 * np.sin(2 * np.pi * 2 * t)) / 22050
    audio = envelope * sum(np.sin(k * phase) / k for k in range(1, 15)) + 0.01 * rng.standard_normal(t.size)
    return (0.5 * audio / np.abs(audio).max()).astype(np.float32)


def test_identical_audio_scores_perfect_values(pair):
    reference, _ = pair
    scores = metrics.compare(reference, reference, 22050)
    for key in ("mel_l1", "mel_l1_full", "mrstft", "mcd", "f0_rmse", "periodicity"):
        assert scores[key] == 0.0, key
    assert scores["vuv_f1"] == 1.0 and scores["stoi"] == pytest.approx(1.0)
    assert scores["pesq"] == pytest.approx(4.644, abs=1e-3)  # the top of the wideband scale
    assert metrics.snr_db(reference, reference) == math.inf


def test_values_agree_with_the_underlying_libraries(pair):
    reference, degraded = pair
    scores = metrics.compare(reference, degraded, 22050)
    ref16, deg16 = soxr.resample(reference, 22050, 16000, "HQ"), soxr.resample(degraded, 22050, 16000, "HQ")
    assert scores["pesq"] == pytest.approx(pesq(16000, ref16, deg16, "wb"), abs=1e-6)
    assert scores["stoi"] == pytest.approx(stoi(reference, degraded, 22050), abs=1e-9)
    direct_mel = np.abs(reference_log_mel(reference) - reference_log_mel(degraded)).mean()
    assert scores["mel_l1"] == pytest.approx(direct_mel, abs=1e-4)
    # MCD from its textbook definition on librosa's mel amplitudes.
    def cepstra(x):
        mel = librosa.feature.melspectrogram(y=x, sr=22050, n_fft=1024, hop_length=256, n_mels=80, power=1.0)
        log_mel = np.log(np.maximum(mel, 1e-5))
        n = np.arange(80)
        basis = np.cos(np.pi * np.arange(1, 25)[:, None] * (n[None, :] + 0.5) / 80) / 80
        return (basis @ log_mel).T
    frames = np.sqrt(((cepstra(reference) - cepstra(degraded)) ** 2).sum(axis=1))
    assert scores["mcd"] == pytest.approx(10 * math.sqrt(2) / math.log(10) * frames.mean(), rel=1e-5)
    f0_ref, v_ref, _ = librosa.pyin(reference, fmin=50, fmax=600, sr=22050, frame_length=1024, hop_length=256)
    f0_deg, v_deg, _ = librosa.pyin(degraded, fmin=50, fmax=600, sr=22050, frame_length=1024, hop_length=256)
    both = v_ref & v_deg
    cents = 1200 * np.log2(f0_deg[both] / f0_ref[both])
    assert scores["f0_rmse"] == pytest.approx(np.sqrt(np.mean(cents ** 2)), rel=1e-6)
    assert 20 < scores["f0_rmse"] < 80  # half a semitone shift is 50 cents
    noise = reference.astype(np.float64) - degraded
    assert metrics.snr_db(reference, degraded) == pytest.approx(
        10 * np.log10((reference.astype(np.float64) ** 2).sum() / (noise ** 2).sum()))


def test_degradation_is_ranked_worse(pair):
    reference, degraded = pair
    good = metrics.compare(reference, reference + 0.001 * np.random.default_rng(2).standard_normal(len(reference)).astype(np.float32), 22050)
    bad = metrics.compare(reference, degraded, 22050)
    for key in metrics.METRICS:
        assert metrics.better(key)(good[key], bad[key]) or good[key] == bad[key], key


def test_short_clips_report_missing_metrics():
    short = np.sin(np.arange(1500) / 5).astype(np.float32)
    scores = metrics.compare(short, short * 0.9, 22050)
    assert scores["pesq"] is None and scores["stoi"] is None and scores["mrstft"] is None
    assert scores["f0_rmse"] is None and scores["mel_l1"] is not None
    tiny = metrics.compare(short[:300], short[:300], 22050)
    assert tiny == {key: None for key in metrics.METRICS}


@needs_shared(LJ_V2)
@needs_shared(LJ_WAVS)
def test_official_v2_beats_a_random_generator_on_every_metric(tmp_path):
    clips = sorted(LJ_WAVS.glob("*.wav"))[:3]
    trained = Vocoder.from_pretrained(LJ_V2)
    torch.manual_seed(0)
    from hifigan.checkpoint import save_release

    save_release(build_generator(trained.config, weight_norm=True), trained.config, tmp_path / "random.pt")
    evaluation = evaluate([str(LJ_V2), str(tmp_path / "random.pt")], clips, report_dir=tmp_path / "report",
                          held_out_ids={clips[0].stem})
    good, bad = evaluation.means(str(LJ_V2)), evaluation.means(str(tmp_path / "random.pt"))
    for key in metrics.METRICS:
        assert good[key] is not None, key
        assert bad[key] is None or metrics.better(key)(good[key], bad[key]), (key, good[key], bad[key])
    assert good["mel_l1"] < 0.4 and bad["mel_l1"] > 1.0 and good["pesq"] > 2.0

    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert set(report["mean"]) == {str(LJ_V2), str(tmp_path / "random.pt")} and report["held_out"] == [clips[0].stem]
    assert set(report["clips"]) == {c.stem for c in clips}
    table = (tmp_path / "report" / "report.md").read_text()
    assert "lj_v2_generator.pt (held-out)" in table and "PESQ (wb)" in table
    pngs = list((tmp_path / "report").rglob("*.png"))
    assert len(pngs) == 1 + 2 * len(clips)
    for png in pngs:
        data = png.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")


def test_other_sample_rates_are_resampled_and_bad_clips_reported(tmp_path, speechlike_module):
    from conftest import TINY_V1, lively
    from hifigan.checkpoint import save_release
    from hifigan.config import MelConfig, ModelConfig

    config = ModelConfig(mel=MelConfig(), generator=TINY_V1)
    save_release(lively(build_generator(config, weight_norm=False)), config, tmp_path / "m.pt")
    soundfile.write(str(tmp_path / "a16k.wav"), soxr.resample(speechlike_module, 22050, 16000), 16000)
    soundfile.write(str(tmp_path / "short.wav"), speechlike_module[:600], 22050)
    (tmp_path / "broken.wav").write_bytes(b"nope")
    evaluation = evaluate([str(tmp_path / "m.pt")], [tmp_path / "a16k.wav", tmp_path / "short.wav",
                                                     tmp_path / "broken.wav"])
    scores = evaluation.clips["a16k"][str(tmp_path / "m.pt")]
    assert scores["mel_l1"] is not None and scores["pesq"] is not None
    assert evaluation.clips["short"][str(tmp_path / "m.pt")]["pesq"] is None
    assert len(evaluation.errors) == 1 and "broken.wav" in evaluation.errors[0]
    assert "| m.pt | 2 |" in markdown_table(evaluation)


def test_id_lists(tmp_path):
    (tmp_path / "val.txt").write_text("LJ001-0001|Some text|Some text\nwavs/LJ002-0002.wav|x\n\n")
    assert read_id_list(tmp_path / "val.txt") == {"LJ001-0001", "LJ002-0002"}


def test_eval_vocodes_given_mels_and_reports_missing_ones(tmp_path, speechlike_module):
    from conftest import TINY_V1, lively
    from hifigan.checkpoint import save_release
    from hifigan.config import MelConfig, ModelConfig

    config = ModelConfig(mel=MelConfig(), generator=TINY_V1)
    save_release(lively(build_generator(config, weight_norm=False)), config, tmp_path / "m.pt")
    for name in ("a", "b"):
        soundfile.write(str(tmp_path / f"{name}.wav"), speechlike_module, 22050)
    (tmp_path / "mels").mkdir()
    vocoder = Vocoder.from_pretrained(tmp_path / "m.pt")
    torch.save(torch.from_numpy(vocoder.mel_spectrogram(speechlike_module)), tmp_path / "mels" / "a.pt")
    evaluation = evaluate([str(tmp_path / "m.pt")], [tmp_path / "a.wav", tmp_path / "b.wav"], mels_dir=tmp_path / "mels")
    assert evaluation.clips["a"][str(tmp_path / "m.pt")]["mel_l1"] is not None
    assert len(evaluation.errors) == 1 and "b.npy: no such file" in evaluation.errors[0]
