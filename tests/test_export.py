import dataclasses
import subprocess
import sys

import onnx
import pytest
import torch

from conftest import lively, random_mel
from hifigan import Vocoder
from hifigan.checkpoint import build_generator, save_release
from hifigan.config import V1, V2, V3, MelConfig, ModelConfig
from hifigan.errors import ExportError, InputError
from hifigan.export import OnnxRuntimeGenerator, export, onnx_bytes, onnx_config

# The three published topologies at reduced widths.
TOPOLOGIES = {"v1": dataclasses.replace(V1, upsample_initial_channel=32),
              "v2": dataclasses.replace(V2, upsample_initial_channel=16),
              "v3": dataclasses.replace(V3, upsample_initial_channel=16)}


def model(name):
    config = ModelConfig(mel=MelConfig(), generator=TOPOLOGIES[name])
    return lively(build_generator(config, weight_norm=False), seed=7).eval(), config


@pytest.mark.parametrize("name", ["v1", "v2", "v3"])
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_parity_at_several_lengths_and_batches(tmp_path, name, fmt):
    generator, config = model(name)
    report = export(generator, config, tmp_path / f"m.{fmt}", fmt=fmt)
    assert report.max_abs_diff <= 1e-4 and (tmp_path / f"m.{fmt}").is_file()
    assert len({shape[0] for shape in report.checked_shapes}) > 1 and len({shape[2] for shape in report.checked_shapes}) > 1
    for batch, frames in [(1, 3), (4, 50), (2, 129)]:
        mel = random_mel(frames, batch=batch, seed=frames)
        with torch.no_grad():
            expected = generator(mel)
        if fmt == "onnx":
            got = OnnxRuntimeGenerator(tmp_path / "m.onnx")(mel)
        else:
            with torch.no_grad():
                got = torch.jit.load(str(tmp_path / "m.torchscript"))(mel)
        assert got.shape == (batch, 1, frames * 256)
        assert float((got - expected).abs().max()) <= 1e-4


def test_onnx_io_names_and_metadata(tmp_path):
    generator, config = model("v1")
    export(generator, config, tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert [i.name for i in proto.graph.input] == ["mel"] and [o.name for o in proto.graph.output] == ["audio"]
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 80, "frames"]
    assert onnx_config(tmp_path / "m.onnx") == config
    assert not any("parametrizations" in init.name for init in proto.graph.initializer)


def test_static_frames(tmp_path):
    generator, config = model("v3")
    report = export(generator, config, tmp_path / "s.onnx", static_frames=20)
    dims = [d.dim_param or d.dim_value for d in onnx.load(str(tmp_path / "s.onnx")).graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 80, 20] and all(shape[2] == 20 for shape in report.checked_shapes)
    with pytest.raises(ExportError, match="positive number of frames"):
        export(generator, config, tmp_path / "x.onnx", static_frames=0)


def test_unknown_format_writes_nothing(tmp_path):
    generator, config = model("v1")
    with pytest.raises(ExportError, match="unknown export format 'tflite'"):
        export(generator, config, tmp_path / "m.tflite", fmt="tflite")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_runtime_backends_run_checkpoints_and_onnx_files(tmp_path, backend):
    if backend == "openvino":
        pytest.importorskip("openvino", reason="the openvino extra is not installed")
    generator, config = model("v1")
    save_release(generator, config, tmp_path / "m.pt")
    (tmp_path / "m.onnx").write_bytes(onnx_bytes(generator, config))
    reference = Vocoder.from_pretrained(tmp_path / "m.pt")
    mels = [random_mel(9, seed=1), random_mel(30, seed=2)]
    for source in (tmp_path / "m.pt", tmp_path / "m.onnx"):
        vocoder = Vocoder.from_pretrained(source, backend=backend, threads=1)
        assert vocoder.config == config
        assert float((vocoder(mels[1]) - reference(mels[1])).abs().max()) <= 1e-4
        for got, expected in zip(vocoder(mels), reference(mels)):  # padded batches run item by item
            assert got.shape == expected.shape and float((got - expected).abs().max()) <= 1e-4
    with pytest.raises(InputError, match="is an ONNX model: use backend='onnxruntime' or 'openvino'"):
        Vocoder.from_pretrained(tmp_path / "m.onnx")


def test_onnxruntime_backend_refuses_other_precisions(tmp_path):
    generator, config = model("v1")
    save_release(generator, config, tmp_path / "m.pt")
    with pytest.raises(InputError, match="onnxruntime backend runs fp32"):
        Vocoder.from_pretrained(tmp_path / "m.pt", backend="onnxruntime", precision="bf16")
    with pytest.raises(InputError, match="unknown backend 'tensorrt'"):
        Vocoder.from_pretrained(tmp_path / "m.pt", backend="tensorrt")


OUT_OF_ORDER_FREES = """
import dataclasses, gc, os, signal
import numpy as np
from hifigan.checkpoint import build_generator
from hifigan.config import V3, MelConfig, ModelConfig
from hifigan.export import OpenVinoGenerator, onnx_bytes
config = ModelConfig(mel=MelConfig(), generator=dataclasses.replace(V3, upsample_initial_channel=8))
model = onnx_bytes(build_generator(config, weight_norm=False).eval(), config)
first, second = OpenVinoGenerator(model, threads=1), OpenVinoGenerator(model, threads=1)
print(first.run(np.zeros((1, 80, 4), np.float32)).shape)
del first; gc.collect(); del second; gc.collect()
signal.signal(signal.SIGUSR1, lambda *_: print("handled"))
os.kill(os.getpid(), signal.SIGUSR1)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="sigaltstack bookkeeping is Linux-only")
def test_openvino_models_freed_out_of_order_leave_signals_working():
    """OpenVINO's compiled models restore the alternate signal stack they found when freed; freed out
    of order they left a dangling one, and the next Python signal handler crashed the process."""
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    result = subprocess.run([sys.executable, "-c", OUT_OF_ORDER_FREES], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.split() == ["(1,", "1,", "1024)", "handled"], result
