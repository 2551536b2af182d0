"""A small OpenAI-compatible server that misbehaves on purpose, for the served backend's fault tests.

The success path is always tested against a real vLLM (tests/test_served_vllm.py); this one only plays the
failures a real server shows now and then: refusals, 429/503, a dead stream, bad JSON, a stall, a key check.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeServer:
    """``mode`` says how to answer chat requests: ok, reasoning, think_open, die_after, bad_json, stall, status,
    status_then_ok, html (for /models too), slow_first. Every chat payload received is kept in ``payloads``."""

    def __init__(self, mode: str = "ok", tokens: int = 5, models: tuple[str, ...] = ("qwen3vl-fake",)):
        self.mode, self.tokens, self.models = mode, tokens, list(models)
        self.status, self.message, self.failures = 503, "busy", 1
        self.api_key = ""
        self.payloads: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.disconnects = 0
        self.chat_requests = 0
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                return

            def _json(self, status: int, body) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status in (429, 503):
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                if server.api_key and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    self._json(401, {"error": {"message": "Unauthorized", "code": 401}})
                    return False
                return True

            def do_GET(self):
                if server.mode == "html":
                    data = b"<html><body>Welcome to nginx!</body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if not self._authorized():
                    return
                if self.path.rstrip("/") == "/v1/models":
                    self._json(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in server.models]})
                else:
                    self._json(404, {"detail": "Not Found"})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self._authorized():
                    return
                if self.path != "/v1/chat/completions":
                    self._json(404, {"detail": "Not Found"})
                    return
                with server.lock:
                    server.chat_requests += 1
                    count = server.chat_requests
                    server.payloads.append(body)
                mode = server.mode
                if mode == "status" or (mode == "status_then_ok" and count <= server.failures):
                    self._json(server.status, {"error": {"message": server.message, "code": server.status}})
                    return
                if mode == "die_at" and count == server.failures:
                    mode = "die_after"
                with server.lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._stream(body, mode)
                except (BrokenPipeError, ConnectionResetError):
                    with server.lock:
                        server.disconnects += 1
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _event(self, obj) -> None:
                data = (obj if isinstance(obj, str) else "data: " + json.dumps(obj)) + "\n\n"
                chunk = data.encode()
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()

            def _stream(self, body: dict, mode: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                tag = _tag(body)
                if mode == "slow_first" and tag == "0":
                    time.sleep(0.6)  # the first request answers last
                n = min(int(body.get("max_tokens", server.tokens)), server.tokens)
                if mode == "reasoning":
                    for piece in ("Let me ", "look."):
                        self._event({"choices": [{"index": 0, "delta": {"reasoning_content": piece}}]})
                for i in range(n):
                    if mode == "die_after" and i == 2:
                        self.connection.shutdown(2)  # the server "crashes" mid-answer
                        return
                    if mode == "bad_json" and i == 1:
                        self._event("data: {not json")
                    if mode == "stall" and i == 1:
                        time.sleep(30)
                    piece = f"w{tag}_{i} " if mode != "think_open" else f"thought{i} "
                    self._event({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
                    if mode == "cancel_watch":
                        time.sleep(0.05)
                reason = "length" if n == int(body.get("max_tokens", n)) else "stop"
                self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
                self._event({"choices": [], "usage": {"prompt_tokens": 42, "completion_tokens": n + (
                    2 if mode == "reasoning" else 0), "total_tokens": 42 + n}})
                self._event("data: [DONE]")
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        return Handler


def _tag(body: dict) -> str:
    """The request's own label: the last text of its last message (tests put a number there)."""
    content = body.get("messages", [{}])[-1].get("content", "")
    if isinstance(content, list):
        content = " ".join(p.get("text", "") for p in content if p.get("type") == "text")
    return content.strip().split()[-1] if content.strip() else ""
