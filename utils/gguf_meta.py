"""Read the metadata of a GGUF file (llama.cpp's model format) without llama.cpp: the header's key/values.

Enough to tell a language model from a vision projector (``mmproj``) and whether the two belong together,
before a llama-server is started on them. Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

GGUF_MAGIC = b"GGUF"
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
MAX_KEYS = 100_000
MAX_STRING = 64 * 1024 * 1024


class GGUFError(ValueError):
    """Not a GGUF file, or a damaged header."""


def _read(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise GGUFError("the header ends early (truncated file)")
    return data


def _string(f: BinaryIO) -> str:
    (n,) = struct.unpack("<Q", _read(f, 8))
    if n > MAX_STRING:
        raise GGUFError(f"a string of {n} bytes in the header (damaged file)")
    return _read(f, n).decode("utf-8", errors="replace")


def _value(f: BinaryIO, kind: int, keep: bool) -> Any:
    if kind in _SCALARS:
        fmt = _SCALARS[kind]
        return struct.unpack(fmt, _read(f, struct.calcsize(fmt)))[0]
    if kind == _STRING:
        return _string(f)
    if kind == _ARRAY:
        item, count = struct.unpack("<IQ", _read(f, 12))
        if item in _SCALARS and not keep:
            f.seek(count * struct.calcsize(_SCALARS[item]), 1)
            return None
        values = [_value(f, item, keep) for _ in range(count)]
        return values if keep else None
    raise GGUFError(f"unknown value type {kind} in the header (damaged file, or a newer GGUF version)")


def read_metadata(path: str | Path, keep_arrays: bool = False) -> dict[str, Any]:
    """The header key/values of a GGUF file (arrays, e.g. the vocabulary, are skipped unless ``keep_arrays``).

    Raises :class:`GGUFError` for a file that is not GGUF or whose header is damaged; OSError if unreadable."""
    with open(path, "rb") as f:
        magic = f.read(4)
        if magic != GGUF_MAGIC:
            raise GGUFError(f"it starts with {magic!r}, not {GGUF_MAGIC!r}: not a GGUF file")
        (version,) = struct.unpack("<I", _read(f, 4))
        if version < 2:
            raise GGUFError(f"GGUF version {version} is too old (llama.cpp reads version 2 and later)")
        _tensors, count = struct.unpack("<QQ", _read(f, 16))
        if count > MAX_KEYS:
            raise GGUFError(f"{count} header keys (damaged file)")
        meta: dict[str, Any] = {"GGUF.version": version}
        for _ in range(count):
            key = _string(f)
            (kind,) = struct.unpack("<I", _read(f, 4))
            meta[key] = _value(f, kind, keep_arrays)
        return meta


def is_projector(meta: dict[str, Any]) -> bool:
    """A vision projector (``mmproj``) rather than a language model."""
    return meta.get("general.architecture") == "clip"


def text_width(meta: dict[str, Any]) -> int | None:
    """The language model's embedding width (what its projector must output)."""
    arch = meta.get("general.architecture")
    value = meta.get(f"{arch}.embedding_length")
    return int(value) if isinstance(value, int) else None


def projector_width(meta: dict[str, Any]) -> int | None:
    """The width the projector outputs (``clip.vision.projection_dim``)."""
    value = meta.get("clip.vision.projection_dim")
    return int(value) if isinstance(value, int) else None
