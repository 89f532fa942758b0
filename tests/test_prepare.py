import hashlib
import tarfile

import numpy as np
import pytest
import soundfile

from hifigan.cli import main
from hifigan.errors import InputError
from hifigan.prepare import DownloadError, download, prepare_ljspeech

IDS = ["LJ001-0001", "LJ001-0002", "LJ002-0001", "LJ002-0002", "LJ003-0001"]


@pytest.fixture
def archive(tmp_path):
    """A miniature LJSpeech-1.1.tar.bz2 with the official layout."""
    source = tmp_path / "src" / "LJSpeech-1.1"
    (source / "wavs").mkdir(parents=True)
    for i, clip in enumerate(IDS):
        soundfile.write(str(source / "wavs" / f"{clip}.wav"), 0.3 * np.sin(np.arange(6000) / (3 + i)), 22050)
    (source / "metadata.csv").write_text("".join(f"{c}|Text {c}.|Text {c}, normalised.\n" for c in IDS))
    path = tmp_path / "LJSpeech-1.1.tar.bz2"
    with tarfile.open(path, "w:bz2") as tar:
        tar.add(source, arcname="LJSpeech-1.1")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_resumes_and_verifies(tmp_path, archive):
    path, sha = archive
    data = path.read_bytes()
    destination = tmp_path / "dl" / path.name
    destination.parent.mkdir()
    (destination.parent / (path.name + ".part")).write_bytes(data[:1000])  # an interrupted earlier download
    assert download(path.as_uri(), destination, sha, progress=False) == destination
    assert destination.read_bytes() == data and not (destination.parent / (path.name + ".part")).exists()
    with pytest.raises(DownloadError, match="does not match the expected"):
        download(path.as_uri(), tmp_path / "bad" / path.name, "0" * 64, progress=False)
    assert not list((tmp_path / "bad").iterdir())


def test_prepare_with_download_official_lists_and_mels(tmp_path, archive):
    path, sha = archive
    (tmp_path / "train.txt").write_text("LJ001-0001|a\nLJ001-0002|b\nLJ002-0001|c\nLJ009-9999|missing\n")
    (tmp_path / "valid.txt").write_text("LJ002-0002|d\n")
    prepared = prepare_ljspeech(tmp_path / "data", fetch=True, url=path.as_uri(), sha256=sha,
                                training_list=tmp_path / "train.txt", validation_list=tmp_path / "valid.txt",
                                mels=True, progress=False)
    assert prepared.root == tmp_path / "data" / "LJSpeech-1.1"
    assert prepared.counts == (3, 1) and prepared.missing == 1
    assert prepared.train_list.read_text().splitlines()[0] == "LJ001-0001|Text LJ001-0001, normalised."
    mel = np.load(prepared.root / "mels" / "LJ001-0001.npy")
    assert mel.shape == (80, 6000 // 256)


def test_seeded_split_and_cli(tmp_path, archive, capsys):
    path, _ = archive
    with tarfile.open(path) as tar:
        tar.extractall(tmp_path / "data")
    first = prepare_ljspeech(tmp_path / "data", validation_fraction=0.2, seed=7, progress=False)
    assert first.counts == (4, 1)
    assert main(["prepare", "ljspeech", str(tmp_path / "data"), "--seed", "7"]) == 0
    assert "train.txt: 4 clips" in capsys.readouterr().out
    with pytest.raises(InputError, match="no LJSpeech layout"):
        prepare_ljspeech(tmp_path / "empty")


def test_unsafe_archive_is_refused(tmp_path):
    from hifigan.prepare import extract

    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 0
        import io

        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(InputError, match="unsafe archive member"):
        extract(evil, tmp_path / "x")
    assert not (tmp_path / "outside.txt").exists()
