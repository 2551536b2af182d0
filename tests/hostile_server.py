"""A hostile OpenAI-compatible server on 127.0.0.1: every answer is scripted byte by byte by the test.

``HostileServer.script[(method, path)] = fn(handler, body)`` answers one route; routes not scripted answer as a
normal small server (a model list, 404 for /tokenize, a streamed chat of ``tokens`` words). Helpers write
raw status lines, headers, JSON bodies, chunked event streams, drips and floods. Every request is recorded
(method, path, headers) in ``requests``.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "qwen3vl-hostile"


class HostileServer:
    def __init__(self, tokens: int = 4):
        self.tokens = tokens
        self.script: dict[tuple[str, str], Callable] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self.stop = threading.Event()  # ends every drip and flood (set at exit)
        self.httpd = _QuietServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> HostileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def paths(self) -> list[str]:
        return [path for _, path, _ in self.requests]


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:  # a client that hangs up is what the tests do
        return


# --- writing helpers (h is the request handler) ----------------------------------------------------------------

def head(h, status: int = 200, headers: dict | None = None, reason: str = "OK") -> None:
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    h.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    h.wfile.flush()


def body(h, data: bytes | str | object, status: int = 200, headers: dict | None = None) -> None:
    if not isinstance(data, (bytes, str)):
        data = json.dumps(data)
    data = data.encode() if isinstance(data, str) else data
    head(h, status, {"Content-Type": "application/json", "Content-Length": str(len(data)), **(headers or {})})
    h.wfile.write(data)
    h.wfile.flush()


def chunk(h, data: bytes) -> None:
    h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    h.wfile.flush()


def stream(h, events: Iterable[bytes | str | dict], stop: threading.Event | None = None, end: bool = True) -> None:
    """A chunked SSE answer; a dict becomes ``data: {json}\\n\\n``, text/bytes are sent as they are."""
    head(h, 200, {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"})
    for event in events:
        if stop is not None and stop.is_set():
            return
        if isinstance(event, dict):
            event = "data: " + json.dumps(event) + "\n\n"
        chunk(h, event.encode() if isinstance(event, str) else event)
    if end:
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()


def delta(text: str, reason: str | None = None) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": reason}]}


def normal_events(n: int) -> list:
    return [delta(f"w{i} ") for i in range(n)] + [delta("", "stop"), {"choices": [], "usage": {
        "prompt_tokens": 7, "completion_tokens": n}}, "data: [DONE]\n\n"]


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def gzip_bomb(size: int) -> bytes:
    """``size`` zero bytes gzipped (1 GiB -> about 1 MiB), compressed in pieces so the test's memory stays low."""
    import zlib

    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"\0" * (1 << 20)
    out = [comp.compress(block) for _ in range(size >> 20)]
    return b"".join(out) + comp.flush()


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data)


def drip(h, data: bytes, every: float, stop: threading.Event) -> None:
    """Send ``data`` one byte each ``every`` seconds (until the client goes or the server stops)."""
    for byte in data:
        if stop.wait(every):
            return
        h.wfile.write(bytes([byte]))
        h.wfile.flush()


def forever(item, stop: threading.Event, pause: float = 0.0):
    while not stop.is_set():
        yield item
        if pause:
            time.sleep(pause)


def _handler(server: HostileServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_ref = server

        def log_message(self, *args):
            return

        def _route(self, method: str) -> None:
            length = int(self.headers.get("Content-Length", 0) or 0)
            data = json.loads(self.rfile.read(length) or b"{}") if length else {}
            server.requests.append((method, self.path, dict(self.headers)))
            fn = server.script.get((method, self.path))
            try:
                if fn is not None:
                    fn(self, data)
                elif self.path == "/v1/models":
                    body(self, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
                elif self.path == "/v1/chat/completions":
                    stream(self, normal_events(min(server.tokens, int(data.get("max_tokens", server.tokens)))))
                else:
                    body(self, {"detail": "Not Found"}, 404)
            except (BrokenPipeError, ConnectionResetError, OSError):
                self.close_connection = True

        def do_GET(self):
            self._route("GET")

        def do_POST(self):
            self._route("POST")

    return Handler
