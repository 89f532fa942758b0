import io
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
import soundfile

from conftest import TINY_V1, lively, random_mel
from hifigan.audio import to_int16
from hifigan.checkpoint import build_generator, save_release
from hifigan.config import MelConfig, ModelConfig
from hifigan.cli import main
from hifigan.errors import HifiganError
from hifigan.serve import VocoderServer, VocoderService
from test_vocoder import tiny_vocoder


@pytest.fixture(scope="module")
def server():
    vocoder = tiny_vocoder()
    server = VocoderServer(VocoderService(vocoder), "127.0.0.1", 0, max_body_bytes=2 ** 20)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def request(server, path, body=None, content_type="application/octet-stream", method=None):
    """(status, content type, body bytes) of one request."""
    req = urllib.request.Request(server.url + path, data=body, method=method or ("POST" if body is not None else "GET"),
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=60) as reply:
            return reply.status, reply.headers["Content-Type"], reply.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array))
    return buffer.getvalue()


def pcm16(reply: bytes) -> tuple[np.ndarray, int]:
    audio, rate = soundfile.read(io.BytesIO(reply), dtype="int16")
    return audio, rate


def test_health(server):
    status, kind, body = request(server, "/health")
    assert status == 200 and kind == "application/json"
    assert json.loads(body) == {"status": "ok", "sample_rate": 22050, "hop_length": 256, "n_mels": 80,
                                "precision": "fp32", "backend": "torch"}


def test_vocode_npy_and_json_equal_the_api(server):
    mel = random_mel(40).numpy()
    expected = to_int16(server.service.vocoder(mel)[0])
    for body, kind in ((npy(mel), "application/octet-stream"), (npy(mel[None]), "application/octet-stream"),
                       (json.dumps({"mel": mel.tolist()}).encode(), "application/json")):
        status, reply_kind, reply = request(server, "/vocode", body, kind)
        audio, rate = pcm16(reply)
        assert (status, reply_kind, rate) == (200, "audio/wav", 22050)
        assert np.array_equal(audio, expected)
    status, _, reply = request(server, "/vocode?denoise=0.05", npy(mel))
    assert status == 200 and not np.array_equal(pcm16(reply)[0], expected)


def test_resynthesize_any_rate(server, speechlike):
    import soxr

    at_16k = soxr.resample(speechlike, 22050, 16000)
    buffer = io.BytesIO()
    soundfile.write(buffer, at_16k, 16000, format="WAV", subtype="FLOAT")
    status, kind, reply = request(server, "/resynthesize", buffer.getvalue())
    audio, rate = pcm16(reply)
    expected = to_int16(server.service.vocoder.resynthesize(at_16k, 16000))
    assert (status, kind, rate) == (200, "audio/wav", 22050) and np.array_equal(audio, expected)


@pytest.mark.parametrize("path,body,kind,status,message", [
    ("/vocode", npy(np.zeros((50, 80), np.float32)), "", 400, "transposed? put mel bands first"),
    ("/vocode", npy(np.full((80, 10), np.nan, np.float32)), "", 400, "NaN or infinite"),
    ("/vocode", npy(np.zeros((2, 80, 10), np.float32)), "", 400, "one mel per request, got a batch of 2"),
    ("/vocode", b"not numpy", "", 400, "the body is not a .npy array"),
    ("/vocode", b'{"mel": [[1, "a"]]}', "application/json", 400, '"mel": [[...], ...]} with numbers'),
    ("/vocode?denoise=-1", npy(np.zeros((80, 10), np.float32)), "", 400, "denoise strength must be a finite number"),
    ("/vocode?denoise=loud", npy(np.zeros((80, 10), np.float32)), "", 400, "got 'loud'"),
    ("/resynthesize", b"RIFF....", "", 400, "the body: cannot read audio"),
    ("/vocode", b"x" * (2 ** 20 + 1), "", 413, "this server takes at most 1048576"),
    ("/nowhere", b"", "", 404, "POST /nowhere: no such route"),
])
def test_bad_requests_get_one_line_errors(server, path, body, kind, status, message):
    got_status, got_kind, reply = request(server, path, body, kind)
    assert (got_status, got_kind) == (status, "application/json")
    error = json.loads(reply)["error"]
    assert message in error and "\n" not in error


def test_wrong_method_and_concurrent_requests(server):
    assert request(server, "/vocode", method="GET")[0] == 405
    status, kind, reply = request(server, "/vocode", b"", method="PUT")
    assert (status, kind) == (405, "application/json") and "PUT /vocode: no such route" in json.loads(reply)["error"]
    mel = npy(random_mel(30, seed=3).numpy())
    results = []
    threads = [threading.Thread(target=lambda: results.append(request(server, "/vocode", mel))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r[0] for r in results] == [200] * 4 and len({r[2] for r in results}) == 1
    assert request(server, "/health")[0] == 200  # still serving


def test_busy_port_is_a_one_line_error(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(HifiganError, match=f"cannot listen on 127.0.0.1:{port}"):
            VocoderServer(VocoderService(tiny_vocoder()), "127.0.0.1", port)
        assert main(["serve", "--model", "nonexistent-model", "--port", str(port)]) == 2
        assert "nonexistent-model is neither a known model name" in capsys.readouterr().err


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell starts a background job


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_cli_serves_until_interrupted(tmp_path, stop_signal):
    config = ModelConfig(mel=MelConfig(), generator=TINY_V1)
    save_release(lively(build_generator(config, weight_norm=False)), config, tmp_path / "tiny.pt")
    process = subprocess.Popen([sys.executable, "-m", "hifigan", "serve", "--model", str(tmp_path / "tiny.pt"),
                                "--port", "0"], stderr=subprocess.PIPE, text=True, preexec_fn=_ignore_sigint)
    try:
        banner = process.stderr.readline()
        url = re.search(r"on (http://\S+):", banner).group(1)
        with urllib.request.urlopen(url + "/health", timeout=30) as reply:
            assert json.loads(reply.read())["sample_rate"] == 22050
        with urllib.request.urlopen(urllib.request.Request(url + "/vocode", data=npy(random_mel(8).numpy())),
                                    timeout=30) as reply:
            assert pcm16(reply.read())[0].shape == (8 * 256,)
    finally:
        process.send_signal(stop_signal)
        assert process.wait(timeout=30) == 0


def test_a_stalled_upload_is_dropped_and_the_server_keeps_serving(server, monkeypatch):
    monkeypatch.setattr("hifigan.serve._Handler.timeout", 0.5)
    with socket.create_connection(server.server_address[:2], timeout=10) as stalled:
        stalled.sendall(b"POST /vocode HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\npartial")
        assert stalled.recv(100) == b""  # closed without a reply once the timeout passed
    assert request(server, "/health")[0] == 200
