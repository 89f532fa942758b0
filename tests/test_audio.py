import numpy as np
import pytest
import soundfile

from hifigan.audio import atomic_path, load_audio, peak_normalize, resample, save_audio, to_int16
from hifigan.errors import AudioFileError


def test_int16_scaling_clips_instead_of_wrapping():
    assert to_int16(np.array([1.0, -1.0, 0.0, 1.5, -2.0, 0.5])).tolist() == [32767, -32767, 0, 32767, -32767, 16384]


def test_save_and_load_round_trip(tmp_path, speechlike):
    save_audio(tmp_path / "a.wav", speechlike, 22050)
    audio, rate = load_audio(tmp_path / "a.wav")
    assert rate == 22050 and np.abs(audio - speechlike).max() < 1 / 32767
    assert soundfile.info(str(tmp_path / "a.wav")).subtype == "PCM_16"


def test_stereo_is_mixed_down(tmp_path):
    left, right = np.full(1000, 0.5, np.float32), np.full(1000, -0.25, np.float32)
    soundfile.write(str(tmp_path / "s.flac"), np.stack([left, right], axis=1), 16000)
    audio, rate = load_audio(tmp_path / "s.flac")
    assert rate == 16000 and audio.shape == (1000,) and np.allclose(audio, 0.125, atol=1e-4)


@pytest.mark.parametrize("name,content,message", [
    ("missing.wav", None, "no such file"),
    ("notes.txt", b"hi", "unsupported audio type '.txt'"),
    ("broken.wav", b"RIFF....WAVEfmt garbage", "cannot read audio"),
])
def test_bad_files(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(AudioFileError, match=message):
        load_audio(tmp_path / name)


def test_empty_file_is_an_error(tmp_path):
    soundfile.write(str(tmp_path / "empty.wav"), np.zeros(0, np.float32), 22050)
    with pytest.raises(AudioFileError, match="holds no audio samples"):
        load_audio(tmp_path / "empty.wav")


def test_non_finite_samples_are_an_error(tmp_path):
    audio = np.full(1000, 0.1, np.float32)
    audio[[3, 7]] = np.nan, np.inf
    soundfile.write(str(tmp_path / "nan.wav"), audio, 22050, subtype="FLOAT")
    with pytest.raises(AudioFileError, match="nan.wav: the file holds 2 NaN or infinite samples"):
        load_audio(tmp_path / "nan.wav")


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out.wav") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_peak_normalize_and_resample(speechlike):
    assert np.isclose(np.abs(peak_normalize(speechlike)).max(), 0.95)
    assert not peak_normalize(np.zeros(10, np.float32)).any()
    assert len(resample(speechlike, 22050, 16000)) == round(len(speechlike) * 16000 / 22050)
    assert resample(speechlike, 22050, 22050) is speechlike
