"""`hifigan prepare ljspeech`: download (resumable, sha256-checked), extract, split, precompute mels."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import tarfile
import urllib.request
from pathlib import Path

import numpy as np

from .audio import atomic_path, load_audio
from .data import split_files
from .errors import HifiganError, InputError

LJSPEECH_URL = "https://data.keithito.com/data/speech/LJSpeech-1.1.tar.bz2"
LJSPEECH_SHA256 = "be1a30453f28eb8dd26af4101ae40cbf2c50413b1bb21936cbcdc6fae3de8aa5"
LJSPEECH_FOLDER = "LJSpeech-1.1"
CHUNK = 1 << 20


class DownloadError(HifiganError, OSError):
    """A download that failed or does not match its checksum."""


def _open(url: str, offset: int):
    """(response, total size or None) reading from byte `offset`; file:// URLs seek, http(s) use Range."""
    if url.startswith("file://"):
        path = Path(urllib.request.url2pathname(url[len("file://"):]))
        handle = open(path, "rb")
        handle.seek(offset)
        return handle, path.stat().st_size
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    response = urllib.request.urlopen(request, timeout=60)
    if offset and response.status != 206:  # the server ignored the range: start over
        raise DownloadError(f"{url}: the server does not resume downloads; delete the .part file and retry")
    length = response.headers.get("Content-Length")
    return response, (offset + int(length)) if length else None


def download(url: str, destination: str | Path, sha256: str, *, progress: bool = True) -> Path:
    """Download to destination via destination.part (resumed if present), verify sha256, then rename."""
    from tqdm import tqdm

    destination = Path(destination)
    partial = destination.with_name(destination.name + ".part")
    destination.parent.mkdir(parents=True, exist_ok=True)
    offset = partial.stat().st_size if partial.exists() else 0
    try:
        response, total = _open(url, offset)
    except OSError as err:
        raise DownloadError(f"{url}: cannot download ({err})") from None
    with response, open(partial, "ab") as out, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                                       desc=destination.name, disable=not progress) as bar:
        for block in iter(lambda: response.read(CHUNK), b""):
            out.write(block)
            bar.update(len(block))
    digest = hashlib.sha256()
    with open(partial, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    if digest.hexdigest() != sha256:
        partial.unlink()
        raise DownloadError(f"{destination.name}: sha256 {digest.hexdigest()} does not match the expected {sha256}; "
                            "the partial file was removed, run again")
    partial.replace(destination)
    return destination


def extract(archive: Path, into: Path) -> None:
    """Unpack a tar archive, refusing members that would land outside `into`."""
    into = into.resolve()
    with tarfile.open(archive, "r:*") as tar:
        for member in tar.getmembers():
            target = (into / member.name).resolve()
            if into not in target.parents and target != into or member.issym() or member.islnk():
                raise InputError(f"{archive}: unsafe archive member {member.name!r}")
        tar.extractall(into)


def dataset_root(folder: Path) -> Path:
    """The folder holding metadata.csv and wavs/: `folder` itself or its LJSpeech-1.1 subfolder."""
    for candidate in (folder, folder / LJSPEECH_FOLDER):
        if (candidate / "metadata.csv").is_file() and (candidate / "wavs").is_dir():
            return candidate
    raise InputError(f"{folder}: no LJSpeech layout (metadata.csv and wavs/) here; use --download to fetch it")


def read_metadata(root: Path) -> dict[str, str]:
    """id -> normalised transcript from an LJSpeech metadata.csv."""
    with open(root / "metadata.csv", encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle, delimiter="|", quoting=csv.QUOTE_NONE)
        return {row[0]: row[-1] for row in rows if row}


@dataclasses.dataclass
class Prepared:
    root: Path
    train_list: Path
    valid_list: Path
    counts: tuple[int, int]
    missing: int


def _read_ids(path: str | Path) -> list[str]:
    return [line.split("|")[0].strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def prepare_ljspeech(folder: str | Path, *, fetch: bool = False, url: str = LJSPEECH_URL, sha256: str = LJSPEECH_SHA256,
                     training_list: str | Path | None = None, validation_list: str | Path | None = None,
                     validation_fraction: float = 0.02, seed: int = 1234, mels: bool = False,
                     progress: bool = True) -> Prepared:
    """Write filelists/train.txt and valid.txt (`id|text`) in the dataset root; optionally fetch and mels."""
    folder = Path(folder)
    if fetch and not (folder / LJSPEECH_FOLDER / "metadata.csv").exists():
        archive = download(url, folder / url.rsplit("/", 1)[-1], sha256, progress=progress)
        extract(archive, folder)
    root = dataset_root(folder)
    texts = {i: t for i, t in read_metadata(root).items() if (root / "wavs" / f"{i}.wav").is_file()}
    if training_list and validation_list:
        train_ids, valid_ids = _read_ids(training_list), _read_ids(validation_list)
    else:
        train_paths, valid_paths = split_files([Path(i) for i in sorted(texts)], validation_fraction, seed)
        train_ids, valid_ids = [p.name for p in train_paths], [p.name for p in valid_paths]
    missing = sum(i not in texts for i in train_ids + valid_ids)
    lists = []
    for name, ids in (("train.txt", train_ids), ("valid.txt", valid_ids)):
        path = root / "filelists" / name
        with atomic_path(path) as tmp:
            tmp.write_text("".join(f"{i}|{texts[i]}\n" for i in ids if i in texts), encoding="utf-8")
        lists.append(path)
    if mels:
        _precompute_mels(root, sorted(texts))
    counts = (sum(i in texts for i in train_ids), sum(i in texts for i in valid_ids))
    return Prepared(root, lists[0], lists[1], counts, missing)


def _precompute_mels(root: Path, ids: list[str]) -> None:
    """root/mels/ID.npy: the model-input mel (22.05 kHz reference settings) of each peak-normalised clip."""
    import torch
    from tqdm import tqdm

    from .audio import peak_normalize
    from .mel import MelSpectrogram

    mel = MelSpectrogram()
    for clip in tqdm(ids, desc="mels", unit="clip"):
        audio, _ = load_audio(root / "wavs" / f"{clip}.wav")
        with torch.no_grad():
            values = mel(torch.from_numpy(peak_normalize(audio, 0.95))).numpy()
        with atomic_path(root / "mels" / f"{clip}.npy") as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, values)
