"""Reading a server's bytes with bounds: a deadline on every socket read, capped bodies, capped SSE lines.

- :func:`deadline` / :func:`progress`: a no-progress timer per thread. Every socket read and write of the
  request made in that thread gets at most the time left, so a server that drips its headers (or an SSE line)
  one byte a second still gives up when the timer runs out; only what the caller calls progress (a token)
  restarts it. httpx's own timeouts are per read and restart on every byte.
- :func:`read_body`: a body counted after decompression (a gzip bomb stops at the cap); one encoding at most.
- :func:`sse_lines`: server-sent-event lines, split only at CR, LF or CRLF (never at U+2028 or U+0085 inside a
  JSON string, as ``str.splitlines`` would), each at most ``max_line`` bytes.
- :func:`parse_json`: ``json.loads`` that turns hostile nesting and 5000-digit numbers into a ValueError.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import httpcore
import httpx

_LOCAL = threading.local()
_EOL = re.compile(rb"\r\n?|\n")
ENCODINGS = ("", "identity", "gzip", "deflate")  # one at most: gzip of gzip inflates a thousand times twice


class BodyError(ValueError):
    """A body or line over its cap, or an encoding the pack does not read (the message says which)."""


def _bounded(timeout: float | None) -> float | None:
    """``timeout`` shortened to what is left of this thread's deadline; raises once it has passed."""
    deadline = getattr(_LOCAL, "deadline", None)
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("no progress before the deadline")
    return left if timeout is None else min(timeout, left)


@contextmanager
def deadline(seconds: float):
    """Bound every socket operation of this thread for ``seconds`` (restarted by :func:`progress`)."""
    previous = getattr(_LOCAL, "deadline", None), getattr(_LOCAL, "span", None)
    _LOCAL.deadline, _LOCAL.span = time.monotonic() + seconds, seconds
    try:
        yield
    finally:
        _LOCAL.deadline, _LOCAL.span = previous


def progress() -> None:
    """The server made progress (a token): restart this thread's no-progress timer."""
    span = getattr(_LOCAL, "span", None)
    if span is not None:
        _LOCAL.deadline = time.monotonic() + span


class _Stream(httpcore.NetworkStream):
    """A socket whose reads and writes never outlast the deadline of the thread using it."""

    def __init__(self, stream: httpcore.NetworkStream):
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _bounded(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _bounded(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context, server_hostname: str | None = None, timeout: float | None = None):
        return _Stream(self._stream.start_tls(ssl_context, server_hostname, _bounded(timeout)))

    def get_extra_info(self, info: str):
        return self._stream.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend):
        self._inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options=None) -> httpcore.NetworkStream:
        return _Stream(self._inner.connect_tcp(host, port, _bounded(timeout), local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options=None):
        return _Stream(self._inner.connect_unix_socket(path, _bounded(timeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def http_client(timeout_s: float, max_connections: int) -> httpx.Client:
    """An httpx client (no redirects followed) whose sockets honour :func:`deadline`."""
    timeout = httpx.Timeout(timeout_s, connect=min(10.0, timeout_s))
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    client = httpx.Client(timeout=timeout, limits=limits, follow_redirects=False)
    transports = [client._transport, *(t for t in client._mounts.values() if t is not None)]
    for transport in transports:  # httpx has no public hook for the network backend (httpcore has)
        pool = getattr(transport, "_pool", None)
        if pool is None or not hasattr(pool, "_network_backend"):
            raise RuntimeError(f"httpx {httpx.__version__}: its connection pool has changed; the served engine "
                               "is tested with httpx 0.27 to 0.29 (pip install 'httpx>=0.27,<0.30').")
        if not isinstance(pool._network_backend, _Backend):
            pool._network_backend = _Backend(pool._network_backend)
    return client


def check_encoding(response: httpx.Response) -> None:
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ENCODINGS:
        raise BodyError(f"its answer is encoded as {encoding[:40]!r} (only gzip or deflate, once, are read)")


def iter_capped(response: httpx.Response, limit: int, too_big: str) -> Iterator[bytes]:
    """The body's decompressed chunks (encoding checked first); :class:`BodyError` ``too_big`` once more than
    ``limit`` bytes came."""
    check_encoding(response)
    received = 0
    for chunk in response.iter_bytes():
        received += len(chunk)
        if received > limit:
            raise BodyError(too_big)
        yield chunk


def read_body(response: httpx.Response, limit: int) -> bytes:
    """The body, decompressed, at most ``limit`` bytes (else :class:`BodyError`)."""
    body = bytearray()
    for chunk in iter_capped(response, limit, f"its answer is over {limit // 1024} KiB (after decompression)"):
        body += chunk
    return bytes(body)


def sse_lines(chunks: Iterable[bytes], max_line: int) -> Iterator[bytes]:
    """Lines of an event stream, split at CR, LF or CRLF only; a line over ``max_line`` bytes is refused."""
    buf = bytearray()
    scan = 0  # buf[:scan] holds no line end
    for chunk in chunks:
        buf += chunk
        pos = 0
        while True:
            match = _EOL.search(buf, max(pos, scan))
            if match is None:
                scan = len(buf)
                break
            if match.group() == b"\r" and match.end() == len(buf):  # maybe the CR of a CRLF split by the network
                scan = match.start()
                break
            yield bytes(buf[pos:match.start()])
            pos = match.end()
        del buf[:pos]
        scan = max(0, scan - pos)
        if len(buf) > max_line:
            raise BodyError(f"one line of its event stream is over {max_line // 1024} KiB")
    if buf.rstrip(b"\r"):
        yield bytes(buf.rstrip(b"\r"))


def parse_json(data: bytes | str) -> object:
    """``json.loads`` whose every failure (bad JSON, nesting too deep, a number of 5000 digits) is a ValueError."""
    try:
        return json.loads(data, strict=False)  # raw control characters inside strings pass, as in browsers
    except RecursionError as err:
        raise ValueError("JSON nested too deep") from err
    except UnicodeDecodeError as err:
        raise ValueError("not UTF-8 text") from err
