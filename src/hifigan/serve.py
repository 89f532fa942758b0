"""A small HTTP service around one Vocoder (Python's http.server: no extra dependencies).

    GET  /health        -> JSON: sample rate, hop length, mel bands, precision, backend
    POST /vocode        body: one mel, the bytes of a .npy file holding (n_mels, T) or
                        (1, n_mels, T), or JSON {"mel": [[...], ...]} -> audio/wav
    POST /resynthesize  body: a wav/flac/ogg file (any rate, any channels) -> audio/wav

Replies are 16-bit PCM wav at the model's rate. The POST routes take `?denoise=STRENGTH`.
Bad input gets a 400 with JSON {"error": "<one line>"}, a body over the size limit a 413.
Requests are read by threads, but one vocoder call runs at a time: a call already uses all of
torch's threads, and interleaved calls would only make each one slower.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np

from .audio import decode_audio, encode_wav
from .denoiser import check_strength
from .errors import HifiganError, InputError

log = logging.getLogger(__name__)
WAV = "audio/wav"
ROUTES = {("GET", "/health"), ("POST", "/vocode"), ("POST", "/resynthesize")}


class RequestError(Exception):
    """An HTTP status and a one-line message for the client."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def decode_mel(body: bytes, content_type: str) -> np.ndarray:
    """A request body -> mel array: JSON {"mel": nested lists} or the bytes of a .npy file."""
    if content_type.split(";")[0].strip().lower() == "application/json":
        try:
            return np.asarray(json.loads(body)["mel"], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as err:
            raise InputError(f'the JSON body must be {{"mel": [[...], ...]}} with numbers ({err})') from None
    try:
        mel = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"the body is not a .npy array ({str(err).splitlines()[0][:120]})") from None
    return mel


class VocoderService:
    """The routes' work, free of HTTP: request bytes in, (content type, reply bytes) out."""

    def __init__(self, vocoder, *, default_denoise: float = 0.0) -> None:
        check_strength(default_denoise)
        self.vocoder = vocoder
        self.default_denoise = default_denoise
        self._lock = threading.Lock()

    def health(self) -> tuple[str, bytes]:
        mel = self.vocoder.config.mel
        info = {"status": "ok", "sample_rate": mel.sample_rate, "hop_length": mel.hop_length, "n_mels": mel.n_mels,
                "precision": self.vocoder.precision, "backend": self.vocoder.backend}
        return "application/json", json.dumps(info).encode()

    def vocode(self, body: bytes, content_type: str, denoise: float) -> tuple[str, bytes]:
        mel = decode_mel(body, content_type)
        if mel.ndim == 3 and mel.shape[0] != 1:
            raise InputError(f"one mel per request, got a batch of {mel.shape[0]}")
        with self._lock:
            audio = self.vocoder(mel, denoise=denoise)
        return WAV, encode_wav(audio[0], self.vocoder.sample_rate)

    def resynthesize(self, body: bytes, denoise: float) -> tuple[str, bytes]:
        audio, sample_rate = decode_audio(body, "the body")
        with self._lock:
            result = self.vocoder.resynthesize(audio, sample_rate, denoise=denoise)
        return WAV, encode_wav(result, self.vocoder.sample_rate)

    def denoise_strength(self, query: str) -> float:
        values = parse_qs(query).get("denoise")
        if not values:
            return self.default_denoise
        try:
            strength = float(values[-1])
        except ValueError:
            strength = values[-1]  # check_strength names it in its error
        check_strength(strength)
        return strength


class _Handler(BaseHTTPRequestHandler):
    server: "VocoderServer"
    protocol_version = "HTTP/1.1"
    timeout = 60  # seconds a client may stay silent mid-request before its connection is dropped

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:  # and the other methods: a JSON 405, not http.server's HTML 501
        self._serve(self.command)

    do_DELETE = do_PATCH = do_PUT

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        try:
            content_type, reply = self._route(method, url.path, url.query)
            self._reply(HTTPStatus.OK, content_type, reply)
        except TimeoutError:
            log.warning("%s: %s %s timed out reading the request", self.address_string(), method, url.path)
            self.close_connection = True
        except RequestError as err:
            self._error(err.status, str(err))
        except HifiganError as err:
            self._error(HTTPStatus.BAD_REQUEST, str(err))
        except Exception as err:  # a server bug must not kill the service or leak a traceback to clients
            log.exception("request %s %s failed", method, url.path)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(err).__name__}")

    def _route(self, method: str, path: str, query: str) -> tuple[str, bytes]:
        service = self.server.service
        if (method, path) not in ROUTES:
            known = any(path == route for _, route in ROUTES)
            raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED if known else HTTPStatus.NOT_FOUND,
                               f"{method} {path}: no such route; use GET /health, POST /vocode or POST /resynthesize")
        if path == "/health":
            return service.health()
        body, denoise = self._body(), service.denoise_strength(query)
        if path == "/vocode":
            return service.vocode(body, self.headers.get("Content-Type", ""), denoise)
        return service.resynthesize(body, denoise)

    def _body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "the request needs a Content-Length header")
        if int(length) > self.server.max_body_bytes:
            self._discard(int(length))  # a client still sending would see a broken pipe, not the 413
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"the body has {int(length)} bytes; this server takes at most {self.server.max_body_bytes}")
        return self.rfile.read(int(length))

    def _discard(self, length: int, chunk: int = 2 ** 16) -> None:
        while length > 0:
            read = len(self.rfile.read(min(chunk, length)))
            if not read:
                break
            length -= read

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._reply(status, "application/json", json.dumps({"error": message}).encode())

    def _reply(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        log.info("%s %s", self.address_string(), format % args)


class VocoderServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, service: VocoderService, host: str = "127.0.0.1", port: int = 8000,
                 max_body_bytes: int = 64 * 2 ** 20) -> None:
        try:
            super().__init__((host, port), _Handler)
        except OSError as err:
            raise HifiganError(f"cannot listen on {host}:{port} ({err.strerror or err})") from None
        self.service, self.max_body_bytes = service, max_body_bytes

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"
