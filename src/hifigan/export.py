"""Export a generator to ONNX or TorchScript, and run exported ONNX models with ONNX Runtime.

Exported graphs take `mel` (B, n_mels, T) and return `audio` (B, 1, T * hop), the layout of the
Open Model Zoo HiFi-GAN model, with weight norm folded. Every export is checked: the exported
model is run on a test mel and compared with PyTorch (max difference <= 1e-4).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import io
import json
import platform
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from .audio import atomic_path
from .config import ModelConfig
from .errors import ExportError, HifiganError
from .generator import Generator

EXPORT_FORMATS = ("onnx", "torchscript")
PARITY_TOLERANCE = 1e-4
CONFIG_KEY = "hifigan_config"


@dataclasses.dataclass
class ExportReport:
    path: Path
    format: str
    max_abs_diff: float
    checked_shapes: list[tuple[int, ...]]


class _MelToAudio(nn.Module):
    """The generator's inference forward without the optional `lengths` argument."""

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.generator(mel)


def _test_mels(n_mels: int, static_frames: int | None) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    shapes = [(1, static_frames), (2, static_frames)] if static_frames else [(1, 37), (2, 64), (3, 5)]
    return [torch.rand((b, n_mels, t), generator=generator) * 10 - 9 for b, t in shapes]


def onnx_bytes(generator: Generator, config: ModelConfig, *, static_frames: int | None = None,
               opset: int = 17) -> bytes:
    """Serialise the generator to an ONNX model (dynamic batch; dynamic frames unless static_frames)."""
    import onnx

    example = _test_mels(config.mel.n_mels, static_frames)[0]
    dynamic = {"mel": {0: "batch"}, "audio": {0: "batch"}}
    if static_frames is None:
        dynamic = {"mel": {0: "batch", 2: "frames"}, "audio": {0: "batch", 2: "samples"}}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its deprecation
        torch.onnx.export(_MelToAudio(generator).eval(), (example,), buffer, input_names=["mel"],
                          output_names=["audio"], dynamic_axes=dynamic, opset_version=opset, dynamo=False)
    model = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(model, {CONFIG_KEY: json.dumps(config.to_dict()),
                                        "sample_rate": str(config.mel.sample_rate),
                                        "hop_length": str(config.mel.hop_length)})
    return model.SerializeToString()


def onnx_session(model: bytes | str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session for a model file or serialised bytes."""
    try:
        import onnxruntime
    except ImportError:
        raise HifiganError("the onnxruntime backend needs: pip install 'hifigan[onnx]'") from None
    options = onnxruntime.SessionOptions()
    # Idle workers sleep instead of spinning: spinning ones take the cores from whatever runs next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    source = model if isinstance(model, bytes) else str(model)
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def onnx_config(model: bytes | str | Path) -> ModelConfig:
    """The hifigan config stored in an ONNX model we exported."""
    import onnx

    try:
        proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model))
    except Exception as err:  # protobuf raises its own DecodeError family
        raise HifiganError(f"not a readable ONNX model ({err})") from None
    props = {prop.key: prop.value for prop in proto.metadata_props}
    if CONFIG_KEY not in props:
        raise HifiganError("this ONNX model was not exported by hifigan (no hifigan_config metadata)")
    return ModelConfig.from_dict(json.loads(props[CONFIG_KEY]))


def _reference(generator: Generator, mel: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return generator(mel).numpy()


def _check(run, generator: Generator, mels: list[torch.Tensor], path: Path, fmt: str) -> ExportReport:
    worst = 0.0
    for mel in mels:
        got, expected = run(mel), _reference(generator, mel)
        if got.shape != expected.shape:
            raise ExportError(f"{path}: exported {fmt} model returned shape {got.shape}, expected {expected.shape}")
        worst = max(worst, float(np.abs(got - expected).max()))
    if worst > PARITY_TOLERANCE:
        raise ExportError(f"{path}: exported {fmt} output differs from PyTorch by {worst:.2e} (> {PARITY_TOLERANCE})")
    return ExportReport(path, fmt, worst, [tuple(mel.shape) for mel in mels])


def export(generator: Generator, config: ModelConfig, path: str | Path, *, fmt: str = "onnx",
           static_frames: int | None = None) -> ExportReport:
    """Export a folded, eval-mode generator, check parity, and write the file atomically."""
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    if static_frames is not None and static_frames < 1:
        raise ExportError(f"--static-frames must be a positive number of frames, got {static_frames}")
    generator = generator.float().cpu().eval()
    path, mels = Path(path), _test_mels(config.mel.n_mels, static_frames)
    with atomic_path(path) as tmp:
        if fmt == "onnx":
            tmp.write_bytes(onnx_bytes(generator, config, static_frames=static_frames))
            session = onnx_session(tmp)
            report = _check(lambda mel: session.run(None, {"mel": mel.numpy()})[0], generator, mels, path, fmt)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(_MelToAudio(generator), mels[0], check_trace=False)
                torch.jit.save(traced, str(tmp), _extra_files={f"{CONFIG_KEY}.json": json.dumps(config.to_dict())})
                loaded = torch.jit.load(str(tmp))
            report = _check(lambda mel: _reference(loaded, mel), generator, mels, path, fmt)
    return report


class _RuntimeGenerator(nn.Module):
    """An exported ONNX generator run by an inference runtime, behind the Generator call signature."""

    def run(self, mel: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def forward(self, mel: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """mel (B, n_mels, T) -> (B, 1, T * hop). Items of a padded batch run one by one at their length."""
        if lengths is None:
            return torch.from_numpy(self.run(np.ascontiguousarray(mel.float().cpu().numpy())))
        outputs = [self.forward(mel[i: i + 1, :, : int(n)])[0, 0] for i, n in enumerate(lengths)]
        batch = torch.zeros(mel.shape[0], 1, max(len(o) for o in outputs))
        for i, audio in enumerate(outputs):
            batch[i, 0, : len(audio)] = audio
        return batch


class OnnxRuntimeGenerator(_RuntimeGenerator):
    """ONNX Runtime on the CPU, fp32."""

    def __init__(self, model: bytes | str | Path, threads: int | None = None) -> None:
        super().__init__()
        self.session = onnx_session(model, threads)

    def run(self, mel: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"mel": mel})[0]


class _SignalStack(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


@contextlib.contextmanager
def _own_signal_stack() -> Iterator[None]:
    """Keep the calling thread's alternate signal stack (sigaltstack) across the block (Linux).

    Each OpenVINO compiled model (2025-2026 releases) installs its own alternate signal stack on
    the thread that compiles it and, when freed, puts back the one it found. Freed out of order
    (A, B built, A freed, then B), the thread is left pointing at A's unmapped stack, and the next
    signal Python handles on it (Ctrl-C, SIGTERM, a DataLoader worker's SIGCHLD) crashes the
    process. With the thread's own stack kept, every model finds and restores that one."""
    if platform.system() != "Linux":
        yield
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    before = _SignalStack()
    libc.sigaltstack(None, ctypes.byref(before))
    try:
        yield
    finally:
        libc.sigaltstack(ctypes.byref(before), None)


class OpenVinoGenerator(_RuntimeGenerator):
    """OpenVINO on the CPU; `precision` "fp32" pins f32 math (OpenVINO would pick bf16 on AMX CPUs)."""

    def __init__(self, model: bytes | str | Path, threads: int | None = None, precision: str = "fp32") -> None:
        super().__init__()
        try:
            import openvino
        except ImportError:
            raise HifiganError("the openvino backend needs: pip install 'hifigan[openvino]'") from None
        core = openvino.Core()
        source = model if isinstance(model, bytes) else str(model)
        settings = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
        if threads:
            settings["INFERENCE_NUM_THREADS"] = threads
        with _own_signal_stack():
            self.compiled = core.compile_model(core.read_model(model=source), "CPU", settings)

    def run(self, mel: np.ndarray) -> np.ndarray:
        return self.compiled({"mel": mel})["audio"]


def runtime_generator(backend: str, model: bytes | str | Path, *, threads: int | None = None,
                      precision: str = "fp32") -> _RuntimeGenerator:
    """An ONNX model (file or bytes) in "onnxruntime" or "openvino"."""
    if backend == "onnxruntime":
        return OnnxRuntimeGenerator(model, threads)
    return OpenVinoGenerator(model, threads, precision)
