"""Every value an OpenAI-compatible server sends, checked before the pack uses it.

Each function takes a parsed JSON body (or a header) and returns plain, bounded Python values, or raises
:class:`BadValue` saying what was wrong (the client turns it into a ``ServerError`` naming ``base_url``).
Nothing here recurses into a server's structure, nor formats it with ``repr``/``str`` (a value nested
100,000 deep would raise RecursionError): unexpected values are described by their type.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

MAX_COUNT = 10**9  # tokens: more than any context
MAX_MODELS = 1000
MAX_MODEL_ID = 512
MAX_TOKENS_LISTED = 1_000_000
MAX_FINISH_REASON = 64
_STATUS = re.compile(r"[1-5][0-9]{2}")
_SECONDS = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,6})?")


class BadValue(ValueError):
    """A server value of the wrong type or an absurd size; ``str()`` says which."""


def kind(value: object) -> str:
    """A value described without formatting it (safe on hostile nesting)."""
    if isinstance(value, str):
        return f"text of {len(value)} characters" if len(value) > 40 else repr(value)
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "null"
    if isinstance(value, int):
        return "a number" if value.bit_length() > 64 else str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "a number too large"
    return {dict: "an object", list: "a list"}.get(type(value), type(value).__name__)


def _object(value: object, what: str) -> dict:
    if not isinstance(value, dict):
        raise BadValue(f"{what} is {kind(value)}, not a JSON object")
    return value


def count(value: object, what: str) -> int | None:
    """A token count: a whole number 0..1e9, or None when absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value) or not 0 <= value <= MAX_COUNT:
        raise BadValue(f"{what} is {kind(value)}, not a token count (a whole number from 0 to {MAX_COUNT})")
    return int(value)


def model_ids(body: object) -> tuple[list[str], int]:
    """``GET /models`` -> (the ids that are usable names, how many entries were ignored)."""
    data = _object(body, "the model list").get("data")
    if not isinstance(data, list):
        raise BadValue(f"its \"data\" is {kind(data)}, not a list of models")
    ids = [m["id"] for m in data[:MAX_MODELS] if isinstance(m, dict) and isinstance(m.get("id"), str)
           and 0 < len(m["id"]) <= MAX_MODEL_ID and m["id"].isprintable() and m["id"].strip() == m["id"]]
    return ids, min(len(data), MAX_MODELS) - len(ids)


def token_ids(body: object) -> list[int]:
    """vLLM/SGLang ``/tokenize`` -> its ``tokens`` (whole numbers >= 0)."""
    tokens = _object(body, "the /tokenize answer").get("tokens")
    if not isinstance(tokens, list) or len(tokens) > MAX_TOKENS_LISTED:
        raise BadValue(f"its \"tokens\" is {kind(tokens)}, not a list of token ids")
    if not all(type(t) is int and 0 <= t < 2**31 for t in tokens):
        raise BadValue("its \"tokens\" holds something that is not a token id")
    return tokens


def detokenized(body: object) -> str:
    """vLLM/SGLang ``/detokenize`` -> its ``prompt`` text."""
    prompt = _object(body, "the /detokenize answer").get("prompt")
    if not isinstance(prompt, str):
        raise BadValue(f"its \"prompt\" is {kind(prompt)}, not text")
    return prompt


def error_text(body: object) -> object:
    """The message in an error body: OpenAI ``{"error": {"message"}}``, FastAPI ``{"detail"}``, or the body."""
    if isinstance(body, dict):
        err = body.get("error", body.get("detail", body.get("message", body)))
        if isinstance(err, dict):
            err = err.get("message", err)
        return err if isinstance(err, str) else f"(an error {kind(err)})"
    return body if isinstance(body, str) else f"(an error body that is {kind(body)})"


def error_status(err: object, default: int = 500) -> int:
    """The HTTP-like ``code`` of an error event: 100..599 as a number or three ASCII digits, else ``default``."""
    code = err.get("code") if isinstance(err, dict) else None
    if type(code) is int and 100 <= code <= 599:
        return code
    if isinstance(code, str) and _STATUS.fullmatch(code):
        return int(code)
    return default


def retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (ASCII digits only; an HTTP date or anything else: None)."""
    if value is None or not _SECONDS.fullmatch(value.strip()):
        return None
    return float(value.strip())


@dataclass
class Piece:
    """What one choice of one stream event adds: text of a kind ("content"/"reasoning"), a finish reason."""

    kind: str = ""
    text: str = ""
    finish_reason: str | None = None


def stream_event(event: object) -> tuple[list[Piece], dict | None, object]:
    """One ``data:`` event of a streamed chat completion -> (pieces, usage counts or None, error or None)."""
    event = _object(event, "a stream event")
    if "error" in event and event["error"] is not None:
        return [], None, event["error"]
    usage = event.get("usage")
    counts = None
    if usage is not None:
        usage = _object(usage, "its \"usage\"")
        counts = {name: count(usage.get(name), f"usage.{name}") for name in ("prompt_tokens", "completion_tokens")}
    choices = event.get("choices")
    if choices is None:
        choices = []
    if not isinstance(choices, list):
        raise BadValue(f"its \"choices\" is {kind(choices)}, not a list")
    return [_choice(c) for c in choices[:8]], counts, None


def _choice(choice: object) -> Piece:
    choice = _object(choice, "a choice")
    delta = choice.get("delta")
    piece = Piece()
    if delta is not None:
        delta = _object(delta, "a choice's \"delta\"")
        for key, piece_kind in (("reasoning_content", "reasoning"), ("reasoning", "reasoning"), ("content", "content")):
            text = delta.get(key)
            if text is None:
                continue
            if not isinstance(text, str):
                raise BadValue(f"delta.{key} is {kind(text)}, not text")
            if text:
                piece.kind, piece.text = piece_kind, text
                break
    reason = choice.get("finish_reason")
    if reason is not None:
        if not isinstance(reason, str) or not 0 < len(reason) <= MAX_FINISH_REASON or not reason.isprintable():
            raise BadValue(f"its finish_reason is {kind(reason)}, not a short word")
        piece.finish_reason = reason
    return piece

