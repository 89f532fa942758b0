"""Checkpoint formats in the wild, detected from content (never from file names).

| format     | reads                                            | writes                              |
|------------|--------------------------------------------------|-------------------------------------|
| native     | our release file                                 | the same                            |
| original   | jik876 `g_`/`do_` pair, `generator_v1`, bare normed state_dicts | g_ file, config.json, do_ file |
| dle        | DeepLearningExamples gen (+ discrim) checkpoints | both files                          |
| nemo       | `.nemo` archives (plain or gzip tar)             | a `.nemo` NeMo can restore          |
| torchaudio | bare folded state_dicts                          | the same                            |
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..checkpoint import Checkpoint, generator_from, read_native, safe_load, write_native, NATIVE_FORMAT
from ..config import ModelConfig
from ..errors import CheckpointError
from ..generator import Generator
from . import dle, nemo, original, torchaudio
from .common import bare_generator_state

FORMATS = ("native", "original", "dle", "nemo", "torchaudio")
_WRITERS = {"original": original.write, "dle": dle.write, "nemo": nemo.write, "torchaudio": torchaudio.write,
            "native": lambda checkpoint, path: (write_native(checkpoint, path), [path])[1]}


def _describe(obj: Any) -> str:
    if isinstance(obj, dict):
        return "a dict with keys " + ", ".join(sorted(map(str, obj))[:6])
    return type(obj).__name__


def detect(path: str | Path) -> tuple[str, Any]:
    """(format name, loaded object or None for archives) for a checkpoint file."""
    path = Path(path)
    if path.is_file() and nemo.is_nemo_archive(path):
        return "nemo", None
    obj = safe_load(path)
    if isinstance(obj, dict) and obj.get("format") == NATIVE_FORMAT:
        return "native", obj
    if isinstance(obj, dict) and "mpd" in obj and "msd" in obj and "generator" not in obj:
        raise CheckpointError(f"{path}: this is the discriminator half of a training pair (do_ / hifigan_discrim_); "
                              "give the generator file (g_ / hifigan_gen_) and it is found beside it")
    for module in (dle, original):
        if module.matches(obj):
            return module.NAME, obj
    bare = bare_generator_state(obj)
    if "conv_pre.weight" in bare:
        return "torchaudio", obj
    if "conv_pre.weight_g" in bare or "conv_pre.parametrizations.weight.original0" in bare:
        return "original", obj
    raise CheckpointError(
        f"{path}: not a HiFi-GAN generator checkpoint: expected one of {', '.join(FORMATS)} "
        f"(e.g. {{'generator': state_dict}} with conv_pre.*, ups.*, resblocks.* keys), found {_describe(obj)}")


def read(path: str | Path, discriminator: str | Path | None = None) -> tuple[str, Checkpoint]:
    """Read any supported checkpoint -> (format name, Checkpoint). Training state comes along when
    the discriminator file is given or sits beside the generator under its usual name."""
    path = Path(path)
    name, obj = detect(path)
    discriminator = Path(discriminator) if discriminator else None
    if name == "native":
        return name, read_native(obj, str(path))
    if name == "nemo":
        return name, nemo.read(path, discriminator)
    return name, {"dle": dle, "original": original, "torchaudio": torchaudio}[name].read(obj, path, discriminator)


def write(checkpoint: Checkpoint, path: str | Path, to: str) -> list[Path]:
    """Write a checkpoint in format `to`; returns every file written (e.g. a config.json or do_ file)."""
    if to not in _WRITERS:
        raise CheckpointError(f"unknown format {to!r}; choose one of {', '.join(FORMATS)}")
    return _WRITERS[to](checkpoint, Path(path))


def convert(source: str | Path, target: str | Path, to: str, discriminator: str | Path | None = None) -> list[Path]:
    """Convert a checkpoint between formats (generator, and training state where both formats hold it)."""
    _, checkpoint = read(source, discriminator)
    generator_from(checkpoint, str(source))  # strict load: shapes and keys agree with the config
    return write(checkpoint, target, to)


def load_generator(path: str | Path) -> tuple[Generator, ModelConfig]:
    """Any supported checkpoint -> (Generator with weight norm folded, in eval mode; its config)."""
    _, checkpoint = read(path)
    return generator_from(checkpoint, str(path)), checkpoint.config
