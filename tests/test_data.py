import numpy as np
import pytest
import soundfile
import torch

from hifigan.data import Example, SegmentDataset, audio_files, collate, pair_with_mels, read_filelist, split_files
from hifigan.errors import InputError

HOP = 256


def tone(seconds=1.0, rate=22050, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 3 * t)).astype(np.float32)
    return mono if channels == 1 else np.stack([mono] * channels, axis=1)


def dataset(examples, **kw):
    options = dict(sample_rate=22050, hop_length=HOP, n_mels=80, segment_size=2048)
    return SegmentDataset(examples, **{**options, **kw})


def test_filelists_and_split(tmp_path):
    (tmp_path / "wavs").mkdir()
    for name in ("LJ001-0001", "LJ001-0002"):
        soundfile.write(str(tmp_path / "wavs" / f"{name}.wav"), tone(), 22050)
    (tmp_path / "list.txt").write_text("LJ001-0001|text\nwavs/LJ001-0002.wav|more\n")
    assert read_filelist(tmp_path / "list.txt", tmp_path) == [tmp_path / "wavs" / "LJ001-0001.wav",
                                                              tmp_path / "wavs" / "LJ001-0002.wav"]
    files = [tmp_path / f"{i}.wav" for i in range(100)]
    train, valid = split_files(files, 0.1, seed=3)
    assert len(valid) == 10 and not set(train) & set(valid) and split_files(files, 0.1, seed=3) == (train, valid)
    assert audio_files(tmp_path) == sorted((tmp_path / "wavs").glob("*.wav"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: no audio files"):
        audio_files(tmp_path / "empty")


def test_crops_keep_mel_frames_and_samples_aligned(tmp_path):
    audio = tone(2.0)
    soundfile.write(str(tmp_path / "a.wav"), audio, 22050, subtype="FLOAT")
    frames = len(audio) // HOP
    mel = np.tile(np.arange(frames, dtype=np.float32), (80, 1))  # each frame stores its own index
    np.save(tmp_path / "a.npy", mel)
    data = dataset(pair_with_mels([tmp_path / "a.wav"], tmp_path))
    for epoch in range(5):
        data.set_epoch(epoch)
        item = data[0]
        start = int(item["mel"][0, 0])
        assert item["mel"].shape == (80, 2048 // HOP)
        assert torch.equal(item["mel"][0], torch.arange(start, start + 8, dtype=torch.float32))
        assert np.allclose(item["audio"].numpy(), audio[start * HOP: start * HOP + 2048])  # no peak scaling
    assert dataset(pair_with_mels([tmp_path / "a.wav"], tmp_path))[0]["mel"][0, 0] == data.__class__(
        data.examples, sample_rate=22050, hop_length=HOP, n_mels=80, segment_size=2048)[0]["mel"][0, 0]


def test_audio_only_crops_start_at_any_sample_as_in_the_reference(tmp_path):
    ramp = np.linspace(-0.5, 0.5, 22050, dtype=np.float32)  # each sample's value gives its position
    soundfile.write(str(tmp_path / "r.wav"), ramp, 22050, subtype="FLOAT")
    data = dataset([Example(tmp_path / "r.wav")])
    starts = []
    for epoch in range(20):
        data.set_epoch(epoch)
        crop = data[0]["audio"].numpy()
        assert crop.shape == (2048,) and data[0]["mel"] is None
        starts.append(int(np.argmin(np.abs(ramp * 0.95 / 0.5 - crop[0]))))
        assert np.allclose(crop, ramp[starts[-1]: starts[-1] + 2048] * 0.95 / 0.5, atol=1e-6)  # peak 0.95
    assert len(set(starts)) == 20 and any(start % HOP for start in starts)
    data.set_epoch(0)
    assert np.array_equal(data[0]["audio"].numpy(), dataset([Example(tmp_path / "r.wav")])[0]["audio"].numpy())
    # An (epoch, index) key crops as set_epoch(epoch) does, whatever epoch the dataset is set to.
    data.set_epoch(7)
    by_epoch = data[0]["audio"].numpy()
    data.set_epoch(0)
    assert np.array_equal(data[(7, 0)]["audio"].numpy(), by_epoch)
    assert not np.array_equal(data[(0, 0)]["audio"].numpy(), by_epoch)


def test_mismatched_pair_is_rejected_with_its_name(tmp_path, caplog):
    soundfile.write(str(tmp_path / "b.wav"), tone(1.0), 22050)
    np.save(tmp_path / "b.npy", np.zeros((80, 50), np.float32))  # audio has 86 frames
    assert dataset(pair_with_mels([tmp_path / "b.wav"], tmp_path))[0] is None
    assert "b.npy: 50 mel frames but 86 frames of audio (b.wav)" in caplog.text


def test_audio_without_mels(tmp_path, caplog):
    files = [tmp_path / f"clip{i}.wav" for i in range(8)]
    (tmp_path / "mels").mkdir()
    np.save(tmp_path / "mels" / "clip0.npy", np.zeros((80, 10), np.float32))
    assert [e.audio for e in pair_with_mels(files, tmp_path / "mels")] == files[:1]
    assert "clip5.wav: no mel clip5.npy/.pt" in caplog.text and "clip6.wav" not in caplog.text
    assert "... and 2 more audio files without a mel" in caplog.text  # 7 missing: 5 named, 2 counted
    with pytest.raises(InputError, match=r"no mel matches any of the 7 audio files .* e\.g\. clip1\.npy"):
        pair_with_mels(files[1:], tmp_path / "mels")
    assert pair_with_mels(files[1:], tmp_path / "mels", required=False) == []
    with pytest.raises(InputError, match="nope: no such mel folder"):
        pair_with_mels(files, tmp_path / "nope")


def test_pair_with_a_non_finite_mel_is_skipped(tmp_path, caplog):
    soundfile.write(str(tmp_path / "n.wav"), tone(1.0), 22050)
    mel = np.zeros((80, 86), np.float32)
    mel[5, 9] = np.nan
    np.save(tmp_path / "n.npy", mel)
    assert dataset(pair_with_mels([tmp_path / "n.wav"], tmp_path))[0] is None
    assert "n.npy: holds 1 NaN or infinite values" in caplog.text


def test_center_framing_shifts_by_half_a_hop(tmp_path):
    audio = tone(1.0)
    soundfile.write(str(tmp_path / "c.wav"), audio, 22050, subtype="FLOAT")
    np.save(tmp_path / "c.npy", np.zeros((80, len(audio) // HOP + 1), np.float32))  # center=True framing
    item = dataset(pair_with_mels([tmp_path / "c.wav"], tmp_path), training=False, mel_framing="center")[0]
    assert np.allclose(item["audio"][:HOP // 2].numpy(), 0) and np.allclose(item["audio"][HOP // 2: HOP].numpy(),
                                                                              audio[: HOP // 2])
    assert item["audio"].shape[0] == item["mel"].shape[1] * HOP


def test_bad_files_are_skipped_not_fatal(tmp_path, caplog):
    soundfile.write(str(tmp_path / "good.wav"), tone(), 22050)
    soundfile.write(str(tmp_path / "silent.wav"), np.zeros(22050, np.float32), 22050)
    soundfile.write(str(tmp_path / "short.wav"), tone(0.01), 22050)
    soundfile.write(str(tmp_path / "multi.wav"), tone(1.0, channels=3), 22050)
    (tmp_path / "broken.wav").write_bytes(b"RIFF")
    soundfile.write(str(tmp_path / "nan.wav"), np.full(22050, np.nan, np.float32), 22050, subtype="FLOAT")
    names = ["good", "silent", "short", "multi", "broken", "nan"]
    data = dataset([Example(tmp_path / f"{n}.wav") for n in names])
    items = [data[i] for i in range(len(names))]
    assert items[0] is not None and all(item is None for item in items[1:])
    for reason in ("silent", "too short", "more than two channels", "cannot read audio", "22050 NaN or infinite samples"):
        assert reason in caplog.text
    batch = collate(items)
    assert batch["audio"].shape == (1, 2048) and batch["mel"] is None and batch["names"] == ["good"]
    assert collate([None, None]) is None


def test_peak_normalisation_and_resampling(tmp_path):
    soundfile.write(str(tmp_path / "r.wav"), tone(1.0, rate=16000), 16000)
    item = dataset([Example(tmp_path / "r.wav")], training=False)[0]
    assert abs(float(item["audio"].abs().max()) - 0.95) < 1e-3
    assert abs(len(item["audio"]) - 22050) < HOP


def test_segment_must_be_whole_frames():
    with pytest.raises(InputError, match="not a multiple of the hop length"):
        dataset([], segment_size=1000)
