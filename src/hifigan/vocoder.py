"""Vocoder: the user-facing inference object (mel -> audio, audio -> mel -> audio)."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Iterable, Iterator, Sequence, Union

import numpy as np
import torch
from torch import nn

from .audio import resample, to_mono
from .formats import load_generator
from .config import ModelConfig
from .denoiser import check_strength
from .device import resolve_device
from .errors import InputError
from .engines import PRECISIONS, RUNTIME_BACKENDS, build_engine, check_choice, effective_precision
from .generator import Generator
from .mel import SILENCE_LOG_MEL, MelSpectrogram
from .pretrained import resolve
from .streaming import receptive_field_frames, stream_audio

Array = Union[torch.Tensor, np.ndarray]


def _as_float_tensor(value: Array, what: str, hint: str = "; check the model that produced it") -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise InputError(f"{what} must be a torch.Tensor or numpy array, got {type(value).__name__}")
    if value.is_complex() or value.dtype == torch.bool:
        raise InputError(f"{what} must hold real numbers, got dtype {value.dtype}")
    value = value.float()
    bad = int((~torch.isfinite(value)).sum())
    if bad:
        raise InputError(f"{what} contains {bad} NaN or infinite values{hint}")
    return value


def _as_audio_tensor(value: Array) -> torch.Tensor:
    """Float audio as given; integer PCM scaled to [-1, 1) as WAV readers and the reference's
    loader do (int16 / 32768, uint8 (x - 128) / 128). Warns when float audio leaves [-1, 1]."""
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, torch.Tensor) and not (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool):
        half = 2 ** (torch.iinfo(value.dtype).bits - 1)
        offset = half if torch.iinfo(value.dtype).min == 0 else 0
        return (value.double() - offset).div_(half).float()
    tensor = _as_float_tensor(value, "audio", hint="")
    peak = float(tensor.abs().max()) if tensor.numel() else 0.0
    if peak > 1.0:
        warnings.warn(f"audio peaks at {peak:.4g}, outside [-1, 1]: the mel front end expects float audio in "
                      "[-1, 1] (integer PCM divided by 32768); the mel will be louder than the models were trained on",
                      stacklevel=2)
    return tensor


class Vocoder:
    """A HiFi-GAN generator ready for inference, with its mel front end.

    Build with `Vocoder.from_pretrained("universal-v1")` or from a checkpoint path. Calls run
    under torch.inference_mode with weight norm already folded.
    """

    def __init__(self, generator: nn.Module, config: ModelConfig, *, device: str | torch.device = "cpu",
                 precision: str = "fp32", backend: str = "torch", threads: int | None = None,
                 max_batch_frames: int = 4096) -> None:
        """`generator`: a folded Generator (built into the engine `backend` names, see
        hifigan.engines), or an already built runtime engine (an ONNX file run by a runtime)."""
        self.config = config
        self.device = resolve_device(device)
        self.backend = backend
        # What runs may differ from what was asked: bf16 without CPU support falls back to fp32.
        self.precision = effective_precision(precision, self.device, backend)
        self.dtype = PRECISIONS[self.precision]
        # A list of mels is vocoded in sub-batches of at most this many (padded) frames, which
        # bounds memory and padding waste (4096 frames = 47.6 s of audio at 22.05 kHz).
        self.max_batch_frames = max_batch_frames
        if isinstance(generator, Generator):
            self.generator = generator.float().to(self.device).eval()
            self.engine = build_engine(self.generator, config, device=self.device, precision=self.precision,
                                       backend=backend, threads=threads)
        else:
            self.generator = self.engine = generator
        self._mel: MelSpectrogram | None = None
        self._denoiser = None

    @property
    def mel(self) -> MelSpectrogram:
        """The model's mel front end, built on first use: librosa's filterbank brings in numba and
        scipy (measured: 1.0 s and +127 MB of process memory), which vocoding mels never needs."""
        if self._mel is None:
            self._mel = MelSpectrogram(**dataclasses.asdict(self.config.mel)).to(self.device)
        return self._mel

    @classmethod
    def from_pretrained(cls, source: str | Path, device: str | torch.device = "cpu", precision: str = "fp32",
                        backend: str = "torch", threads: int | None = None, **options) -> "Vocoder":
        """Load a registered model ("lj-v1", "universal-v1") or any supported checkpoint file.

        backend: "torch" (default, the fast path), "eager", "compile", "onnxruntime" or
        "openvino" (the last two also run an exported .onnx file directly). precision "bf16"
        picks the fastest bf16 path and falls back to fp32 with a warning where the CPU lacks
        bf16. `threads` sets the intra-op threads (torch's are process-wide).
        `options` go to the constructor (e.g. max_batch_frames).
        """
        check_choice(precision, backend)
        path = resolve(source)
        with open(path, "rb") as handle:
            is_onnx = handle.read(1) == b"\x08"  # an ONNX ModelProto starts with its ir_version field
        if not is_onnx:
            generator, config = load_generator(path)
            return cls(generator, config, device=device, precision=precision, backend=backend, threads=threads,
                       **options)
        if backend not in RUNTIME_BACKENDS:
            raise InputError(f"{path} is an ONNX model: use backend='onnxruntime' or 'openvino'")
        from .export import onnx_config, runtime_generator

        effective = effective_precision(precision, resolve_device(device), backend)
        engine = runtime_generator(backend, path, threads=threads, precision=effective)
        return cls(engine, onnx_config(path), device=device, precision=effective, backend=backend, **options)

    @property
    def sample_rate(self) -> int:
        return self.config.mel.sample_rate

    @property
    def hop_length(self) -> int:
        return self.config.mel.hop_length

    @property
    def n_mels(self) -> int:
        return self.config.mel.n_mels

    def describe(self) -> dict:
        """Architecture, parameter count and mel settings, for `hifigan info`."""
        return {
            "generator": dataclasses.asdict(self.config.generator),
            "parameters": sum(p.numel() for p in self.generator.parameters()),
            "mel": dataclasses.asdict(self.config.mel),
            "device": str(self.device),
            "precision": self.precision,
            "backend": self.backend,
        }

    def _check_mel(self, mel: Array) -> torch.Tensor:
        """Validate a mel and return it as (B, n_mels, T) float32."""
        tensor = _as_float_tensor(mel, "mel")
        if tensor.dim() == 2:
            tensor = tensor.unsqueeze(0)
        if tensor.dim() != 3:
            raise InputError(f"mel must be (n_mels, frames) or (batch, n_mels, frames), got shape {tuple(tensor.shape)}")
        if tensor.shape[1] != self.n_mels:
            hint = " (transposed? put mel bands first)" if tensor.shape[2] == self.n_mels else ""
            raise InputError(f"mel has {tensor.shape[1]} channels but this model takes {self.n_mels}: "
                             f"got shape {tuple(tensor.shape)}{hint}")
        if tensor.shape[2] == 0 or tensor.shape[0] == 0:
            raise InputError(f"mel has no frames: shape {tuple(tensor.shape)}")
        return tensor

    @torch.inference_mode()
    def _generate(self, mel: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, n_mels, T) float32 -> (B, T * hop) float32 on the vocoder's device."""
        # The torch engine takes fp32 (it casts inside); the eager ones take their own dtype.
        dtype = self.dtype if self.backend in ("eager", "compile") else torch.float32
        mel = mel.to(self.device, dtype)
        lengths = None if lengths is None else lengths.to(self.device)
        return self.engine(mel, lengths).squeeze(1).float()

    def __call__(self, mel: Array | Sequence[Array], denoise: float = 0.0) -> Array | list[Array]:
        """Mel (n_mels, T) or (B, n_mels, T) -> audio (B, T * hop) in [-1, 1].

        Numpy in gives numpy out; tensors come back on the vocoder's device. A list of mels of
        different lengths is batched (padded with silence, padded steps masked) and returned as
        a list of 1-D audio, each trimmed to its own frames * hop. `denoise` > 0 applies the
        bias denoiser with that strength (see hifigan.denoiser).
        """
        check_strength(denoise)
        if isinstance(mel, (list, tuple)):
            return self._vocode_list(mel, denoise)
        audio = self.denoise(self._generate(self._check_mel(mel)), denoise)
        return audio.cpu().numpy() if isinstance(mel, np.ndarray) else audio

    def convert_spectrogram_to_audio(self, spec: Array) -> Array:
        """NeMo-compatible alias: spec (B, n_mels, T) -> audio (B, T * hop)."""
        return self(spec)

    def denoise(self, audio: torch.Tensor, strength: float) -> torch.Tensor:
        """Remove the generator's bias tone from audio (B, N) or (N,); strength 0 is a no-op."""
        if strength == 0:
            return audio
        if self._denoiser is None:
            from .denoiser import Denoiser

            mel = self.config.mel
            self._denoiser = Denoiser(self._generate, n_mels=mel.n_mels, n_fft=mel.n_fft,
                                      hop_length=mel.hop_length, win_length=mel.win_length).to(self.device)
        return self._denoiser(audio, strength)

    @property
    def stream_latency_frames(self) -> int:
        """Frames of look-ahead `stream` waits for before it emits a frame's audio (its added latency)."""
        return receptive_field_frames(**dataclasses.asdict(self.config.generator))

    def stream(self, mel_chunks: Iterable[Array]) -> Iterator[Array]:
        """Vocode an utterance that arrives in (n_mels, t) chunks of any sizes, yielding 1-D audio as
        soon as it is determined. The concatenated pieces equal whole-utterance output (to float
        rounding); each frame's audio is delayed by `stream_latency_frames` frames of input."""
        as_numpy = False

        def checked() -> Iterator[torch.Tensor]:
            nonlocal as_numpy
            for chunk in mel_chunks:
                as_numpy = isinstance(chunk, np.ndarray)
                yield self._check_mel(chunk)[0]

        for piece in stream_audio(self._generate, checked(), context=self.stream_latency_frames,
                                  hop_length=self.hop_length):
            yield piece.cpu().numpy() if as_numpy else piece

    def _vocode_list(self, mels: Sequence[Array], denoise: float = 0.0) -> list[Array]:
        checked = [self._check_mel(mel) for mel in mels]
        if any(mel.shape[0] != 1 for mel in checked):
            raise InputError("a list of mels must hold single (n_mels, frames) spectrograms")
        audio: list[torch.Tensor | None] = [None] * len(checked)
        for group in self._length_groups([mel.shape[-1] for mel in checked]):
            for index, result in zip(group, self._vocode_padded([checked[i][0] for i in group])):
                audio[index] = self.denoise(result, denoise)
        return [a.cpu().numpy() if isinstance(m, np.ndarray) else a for a, m in zip(audio, mels)]

    def _length_groups(self, lengths: list[int]) -> list[list[int]]:
        """Indices sorted by length, cut into batches of at most max_batch_frames padded frames."""
        groups: list[list[int]] = []
        for index in sorted(range(len(lengths)), key=lengths.__getitem__):
            # Sorted ascending, so the newest item is the longest: padded size = count * its length.
            if groups and (len(groups[-1]) + 1) * lengths[index] <= self.max_batch_frames:
                groups[-1].append(index)
            else:
                groups.append([index])
        return groups

    def _vocode_padded(self, mels: list[torch.Tensor]) -> list[torch.Tensor]:
        """(n_mels, T_i) mels -> 1-D audio of T_i * hop each, via one silence-padded, masked batch."""
        lengths = torch.tensor([mel.shape[-1] for mel in mels])
        batch = torch.full((len(mels), self.n_mels, int(lengths.max())), SILENCE_LOG_MEL)
        for i, mel in enumerate(mels):
            batch[i, :, : mel.shape[-1]] = mel
        audio = self._generate(batch, lengths if int(lengths.min()) != int(lengths.max()) else None)
        return [audio[i, : int(n) * self.hop_length] for i, n in enumerate(lengths)]

    def _check_audio(self, audio: Array, sample_rate: int) -> torch.Tensor:
        """One utterance, (samples,) or (channels, samples) -> mono (samples,) at the model rate."""
        tensor = _as_audio_tensor(audio)
        if tensor.dim() not in (1, 2) or tensor.shape[-1] == 0:
            raise InputError(f"audio must be non-empty (samples,) or (channels, samples), got shape {tuple(tensor.shape)}")
        if not isinstance(sample_rate, int) or sample_rate <= 0:
            raise InputError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        mono = resample(to_mono(tensor.cpu().numpy()), sample_rate, self.sample_rate)
        return torch.from_numpy(mono)

    @torch.inference_mode()
    def mel_spectrogram(self, audio: Array, sample_rate: int | None = None) -> Array:
        """Audio (samples,) or (batch, samples) at the model rate -> log-mel (.., n_mels, samples // hop).

        Audio is float in [-1, 1]; integer PCM (int16 etc.) is scaled there first.

        With `sample_rate`, the audio is one utterance ((samples,) or (channels, samples)) that is
        mixed down and resampled to the model rate first.
        """
        tensor = _as_audio_tensor(audio) if sample_rate is None else self._check_audio(audio, sample_rate)
        mel = self.mel(tensor.to(self.device))
        return mel.cpu().numpy() if isinstance(audio, np.ndarray) else mel

    def resynthesize(self, audio: Array, sample_rate: int, denoise: float = 0.0) -> Array:
        """Audio of one utterance at any rate -> vocoded audio (samples',) at self.sample_rate."""
        mel = self.mel_spectrogram(audio if isinstance(audio, np.ndarray) else torch.as_tensor(audio), sample_rate)
        result = self(torch.as_tensor(mel), denoise=denoise)[0]
        return result.cpu().numpy() if isinstance(audio, np.ndarray) else result
