"""Reading one streamed chat completion (server-sent events), bounded whatever the server does.

- at most ``max_tokens + TOKEN_MARGIN`` pieces of text (and ``MAX_CHARS_PER_TOKEN`` characters each on
  average), then the stream is closed and the answer ends as ``length``;
- at most ``AFTER_FINISH_EVENTS`` events after ``finish_reason`` (the usage event comes there), then closed;
- at most ``STREAM_BASE_BYTES + BYTES_PER_TOKEN`` per token in all, one line at most ``MAX_LINE`` bytes;
- only a piece of text or the finish restarts the no-progress timer (``timeout_s``): SSE comments, empty
  deltas and ``choices: []`` do not.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from . import wire
from .server_values import BadValue, error_status, error_text, stream_event

TOKEN_MARGIN = 16
MAX_CHARS_PER_TOKEN = 64
AFTER_FINISH_EVENTS = 16
STREAM_BASE_BYTES = 1 << 20
BYTES_PER_TOKEN = 4096
MAX_LINE = 1 << 20


@dataclass
class StreamResult:
    """One streamed answer."""

    content: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    chunks: int = 0
    events: int = 0  # data: events read
    retries: int = 0
    has_reasoning_field: bool = False
    stopped_early: str = ""  # why the pack closed a stream that went past its bounds


@dataclass
class Cancel:
    """Shared by the requests of one run: set it and every open stream is closed (the server aborts them)."""

    event: threading.Event = field(default_factory=threading.Event)
    _open: set = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, response) -> None:
        with self._lock:
            self._open.add(response)
        if self.event.is_set():
            response.close()

    def unregister(self, response) -> None:
        with self._lock:
            self._open.discard(response)

    def set(self) -> None:
        self.event.set()
        with self._lock:
            responses = list(self._open)
        for response in responses:
            response.close()

    def is_set(self) -> bool:
        return self.event.is_set()


class StreamFault(Exception):
    """What was wrong with the stream (``problem``), or the server's own error event (``status``, ``message``)."""

    def __init__(self, problem: str, status: int = 0, message: object = None):
        super().__init__(problem)
        self.problem, self.status, self.message = problem, status, message


def read_events(response: httpx.Response, result: StreamResult, on_delta: Callable[[str, str], None],
                cancel: Cancel, max_tokens: int) -> None:
    """Fill ``result`` from the stream; raises :class:`StreamFault`, ``wire.BodyError`` or httpx errors."""
    cap_tokens = max(1, int(max_tokens)) + TOKEN_MARGIN
    cap_chars = cap_tokens * MAX_CHARS_PER_TOKEN
    after_finish = 0
    limit = STREAM_BASE_BYTES + cap_tokens * BYTES_PER_TOKEN
    for line in wire.sse_lines(wire.iter_capped(response, limit, f"its answer stream is over {limit >> 20} MiB"),
                               MAX_LINE):
        if cancel.is_set():
            return
        if not line.startswith(b"data:"):
            continue  # comments (": keep-alive"), event:/id:/retry: fields, blank separators
        data = line[5:].strip()
        result.events += 1
        if data == b"[DONE]":
            return
        if result.finish_reason is not None:
            after_finish += 1
            if after_finish > AFTER_FINISH_EVENTS:
                _stop(result, f"kept sending events after finish_reason {result.finish_reason!r}")
                return
        try:
            pieces, usage, error = stream_event(wire.parse_json(data))
        except BadValue as err:
            raise StreamFault(f"sent a stream event the pack cannot use: {err}") from err
        except ValueError as err:
            start = data[:2000].decode("utf-8", "replace")
            raise StreamFault(f"sent a stream event that is not JSON ({err}; it starts {start!r})") from err
        if error is not None:
            raise StreamFault("sent an error event", error_status(error), error_text(error))
        if usage is not None:
            result.prompt_tokens = _pick(usage["prompt_tokens"], result.prompt_tokens)
            result.completion_tokens = _pick(usage["completion_tokens"], result.completion_tokens)
        for piece in pieces:
            if piece.text and result.finish_reason is None:
                if piece.kind == "reasoning":
                    result.has_reasoning_field = True
                    result.reasoning += piece.text
                else:
                    result.content += piece.text
                result.chunks += 1
                wire.progress()
                on_delta(piece.kind, piece.text)
            if piece.finish_reason and result.finish_reason is None:
                result.finish_reason = piece.finish_reason
                wire.progress()
        if result.finish_reason is None and (result.chunks >= cap_tokens
                                              or len(result.content) + len(result.reasoning) > cap_chars):
            _stop(result, f"sent more than max_new_tokens ({max_tokens}) allows")
            result.finish_reason = "length"
            return


def _pick(new: int | None, old: int | None) -> int | None:
    return old if new is None else new


def _stop(result: StreamResult, why: str) -> None:
    result.stopped_early = why
