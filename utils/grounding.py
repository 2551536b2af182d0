"""Grounding answers (boxes / points inside messy model text) -> detections in image pixels.

Qwen3-VL answers a grounding prompt with JSON such as
``[{"bbox_2d": [x1, y1, x2, y2], "label": "cat"}]`` or ``{"point_2d": [x, y], ...}``, coordinates
relative 0..1000 on the original image (SPEC section 6). Real answers come in code fences, with prose
around them, single quotes, trailing commas, cut off by ``max_new_tokens``... The parser keeps every
complete object it can read and never raises on model text: no JSON at all gives an empty result and a
logged warning.

    >>> r = parse_grounding('```json\\n[{"bbox_2d": [100, 200, 300, 400], "label": "cat"}]\\n```', 1000, 500)
    >>> r.detections[0].box
    (100.0, 100.0, 300.0, 200.0)
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field

from .errors import InputError
from .images import smart_resize
from .messages import check_text
from .model_json import read_objects
from .text import split_thinking

logger = logging.getLogger(__name__)

COORD_MODES = ("qwen3", "qwen2.5", "normalized", "pixels")
GROUNDING_MODES = ("boxes", "points")
BOX_KEYS = ("bbox_2d", "bbox", "box_2d", "box", "bounding_box")
POINT_KEYS = ("point_2d", "point", "point2d")
LABEL_KEYS = ("label", "name", "category", "class")
# Qwen2.5-VL's processor defaults (preprocessor_config.json): 28-pixel grid, 56x56 .. 16384 * 28x28 pixels.
QWEN25_FACTOR, QWEN25_MIN_PIXELS, QWEN25_MAX_PIXELS = 28, 56 * 56, 16384 * 28 * 28

_FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_-]*[ \t]*\r?\n?(.*?)(?:```|\Z)", re.DOTALL)
_EMPTY_LIST = re.compile(r"\[\s*\]")
_IMAGE_MARKER = re.compile(r"^=== image (\d+) ===[ \t]*$", re.MULTILINE)
# Bounds on model text (never raise, never hang): an answer longer than MAX_TEXT characters, or an object nested
# deeper than MAX_DEPTH brackets, is not read (a real answer holds at most max_new_tokens, ~4 characters each).
MAX_TEXT = 1_000_000
MAX_DEPTH = 32
# Bounds on the index input: detections are numbered 0..MAX_INDEX at most.
MAX_INDEX = 9999
MAX_INDEX_TEXT = 10_000


@dataclass(frozen=True)
class Detection:
    """One object: a box ``(x1, y1, x2, y2)`` or a point ``(x, y)``, in the units of its stage."""

    label: str
    box: tuple[float, float, float, float] | None = None
    point: tuple[float, float] | None = None


@dataclass
class ParseResult:
    """Detections of one answer, in pixels of one image, and what was dropped on the way."""

    detections: list[Detection] = field(default_factory=list)
    found_json: bool = False
    dropped_zero_area: int = 0
    dropped_invalid: int = 0
    dropped_incomplete: int = 0


# --------------------------------------------------------------------------------------- prompts


def build_grounding_prompt(target: str, mode: str = "boxes") -> str:
    """Qwen3-VL's grounding prompt (Qwen's 2d_grounding cookbook wording) for ``target``.

    ``target`` is one phrase ("the red car") or several categories separated by commas ("cat, dog").
    """
    if mode not in GROUNDING_MODES:
        raise InputError("mode", f"unknown mode {mode!r}.", f"Choose one of {', '.join(GROUNDING_MODES)}.")
    cleaned = " ".join(check_text(target, "target").replace('"', "").split()).strip(" ,")
    if not cleaned:
        raise InputError("target", "is empty.",
                         "Type what to find, e.g. cat or the red car; separate several categories with commas.")
    if mode == "points":
        return (f'Locate every instance that belongs to the following categories: "{cleaned}". '
                'Report point coordinates in JSON format like this: {"point_2d": [x, y], "label": "category"}.')
    return (f'Locate every instance that belongs to the following categories: "{cleaned}". '
            "Report bbox coordinates in JSON format.")


# --------------------------------------------------------------------------------- text -> dicts


def _candidate_text(text: str) -> str:
    """The answer part (no thinking); the contents of its code fences when it has any."""
    if "</think>" in text:
        text = split_thinking(text)[1]
    blocks = [m.group(1) for m in _FENCE.finditer(text)]
    return "\n".join(blocks) if blocks else text


def _has_geometry(obj: dict) -> bool:
    return any(k in obj for k in BOX_KEYS + POINT_KEYS)


def _flatten(obj, depth: int = 0) -> list[dict]:
    """Objects carrying a box or point, also inside wrappers like ``{"objects": [...]}`` (MAX_DEPTH levels)."""
    if depth > MAX_DEPTH:
        return []
    if isinstance(obj, dict):
        if _has_geometry(obj):
            return [obj]
        return [d for v in obj.values() for d in _flatten(v, depth + 1)]
    if isinstance(obj, list):
        return [d for v in obj for d in _flatten(v, depth + 1)]
    return []


def extract_objects(text: str) -> tuple[list[dict], bool, int]:
    """Model text -> (objects with a box/point key, whether any JSON object was found, unreadable count).

    The unreadable count includes an object left open at the end (answer cut off by max_new_tokens). Text over
    MAX_TEXT characters is not read at all (a warning says so).
    """
    text = text if isinstance(text, str) else ""
    if len(text) > MAX_TEXT:
        logger.warning("grounding text of %d characters is longer than any model answer (%d); not read.",
                       len(text), MAX_TEXT)
        return [], False, 0
    values, found, unreadable = json_values(text)  # "[]" counts as found: a valid "nothing found"
    return [d for value in values for d in _flatten(value)], found, unreadable


# ------------------------------------------------------------------------------ dicts -> pixels


def _numbers(value, count: int) -> tuple[float, ...] | None:
    """``[1, 2, 3, 4]``, ``["1", "2", ...]`` or ``[[x1, y1], [x2, y2]]`` -> floats, or None."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (list, tuple)) for v in value):
        value = [x for v in value for x in v]
    if not isinstance(value, (list, tuple)) or len(value) != count:
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if all(math.isfinite(v) for v in out) else None


def _label(obj: dict) -> str:
    for key in LABEL_KEYS:
        if isinstance(obj.get(key), (str, int, float)) and not isinstance(obj.get(key), bool):
            return str(obj[key]).strip()
    return ""


def qwen25_resized_size(width: int, height: int, factor: int = QWEN25_FACTOR, min_pixels: int = QWEN25_MIN_PIXELS,
                        max_pixels: int = QWEN25_MAX_PIXELS) -> tuple[int, int]:
    """The ``(width, height)`` Qwen2.5-VL's processor resizes an image to (its ``smart_resize``)."""
    h_bar, w_bar = smart_resize(height, width, factor, min_pixels, max_pixels)
    return w_bar, h_bar


def _scale(coord_mode: str, width: int, height: int, resized: tuple[int, int] | None) -> tuple[float, float, float, float]:
    """``(num_x, den_x, num_y, den_y)``: pixel = value * num / den."""
    if coord_mode == "qwen3":
        return width, 1000.0, height, 1000.0
    if coord_mode == "qwen2.5":
        rw, rh = resized if resized and resized[0] > 0 and resized[1] > 0 else qwen25_resized_size(width, height)
        return width, float(rw), height, float(rh)
    if coord_mode == "normalized":
        return width, 1.0, height, 1.0
    if coord_mode == "pixels":
        return 1.0, 1.0, 1.0, 1.0
    raise InputError("coord_mode", f"unknown coordinate mode {coord_mode!r}.", f"Choose one of {', '.join(COORD_MODES)}.")


def _px(value: float, num: float, den: float, limit: int) -> float:
    return round(min(max(value * num / den, 0.0), float(limit)), 2)


def parse_grounding(text: str, width: int, height: int, coord_mode: str = "qwen3",
                    resized: tuple[int, int] | None = None) -> ParseResult:
    """Model text -> detections in pixels of a ``width`` x ``height`` image.

    Coordinates are converted by ``coord_mode``: ``qwen3`` relative 0..1000 (pixel = v / 1000 * size),
    ``qwen2.5`` absolute pixels of the resized image (``resized`` = its (width, height); None = Qwen2.5-VL's
    default resize of this image), ``normalized`` 0..1, ``pixels`` as is. Values are clamped to the image,
    swapped corners are put in order, boxes with no area after that are dropped and counted.
    """
    sx_num, sx_den, sy_num, sy_den = _scale(coord_mode, width, height, resized)
    objects, found, unreadable = extract_objects(text)
    result = ParseResult(found_json=found, dropped_incomplete=unreadable)
    if not found:
        logger.warning("no JSON object found in the grounding text (%d characters): no detections.", len(text or ""))
    elif unreadable:
        logger.warning("%d grounding object(s) could not be read (cut off or malformed); kept %d.",
                       unreadable, len(objects))
    for obj in objects:
        box = next((_numbers(obj[k], 4) for k in BOX_KEYS if k in obj), None)
        point = None if box else next((_numbers(obj[k], 2) for k in POINT_KEYS if k in obj), None)
        if box is not None:
            xs = sorted((_px(box[0], sx_num, sx_den, width), _px(box[2], sx_num, sx_den, width)))
            ys = sorted((_px(box[1], sy_num, sy_den, height), _px(box[3], sy_num, sy_den, height)))
            if xs[1] <= xs[0] or ys[1] <= ys[0]:
                result.dropped_zero_area += 1
                continue
            result.detections.append(Detection(_label(obj), box=(xs[0], ys[0], xs[1], ys[1])))
        elif point is not None:
            result.detections.append(Detection(_label(obj), point=(_px(point[0], sx_num, sx_den, width),
                                                                   _px(point[1], sy_num, sy_den, height))))
        else:
            result.dropped_invalid += 1
    if result.dropped_zero_area or result.dropped_invalid:
        logger.warning("grounding: dropped %d box(es) with no area and %d object(s) with unusable coordinates.",
                       result.dropped_zero_area, result.dropped_invalid)
    return result


# ------------------------------------------------------------------------- selection and batches


def parse_index(index: str) -> list[int] | None:
    """``"0,2"`` or ``"1-3"`` -> indices; empty -> None (keep all). Anything else -> InputError.

    Indices are bounded (0..MAX_INDEX) before any range is expanded, so ``"0-99999999999"`` is refused at once.
    """
    if not index or not index.strip():
        return None
    advice = (f'Use indices counted from 0 (up to {MAX_INDEX}), separated by commas, e.g. "0,2" or a range "1-3".')
    if not isinstance(index, str) or len(index) > MAX_INDEX_TEXT:
        raise InputError("index", f"is not a short list of indices ({len(str(index))} characters).", advice)
    out: dict[int, None] = {}
    for part in index.replace(" ", "").split(","):
        if not part:
            continue
        m = re.fullmatch(r"(\d{1,9})(?:-(\d{1,9}))?", part)
        lo, hi = (int(m.group(1)), int(m.group(2) or m.group(1))) if m else (0, -1)
        if not m or hi < lo:
            raise InputError("index", f"cannot read {part[:40]!r} in {index[:80]!r}.", advice)
        if hi > MAX_INDEX:
            raise InputError("index", f"{part!r} goes past {MAX_INDEX}, more detections than any answer holds.",
                             advice)
        out.update(dict.fromkeys(range(lo, hi + 1)))
    return list(out)


def select(detections: list[Detection], label_filter: str = "", index: list[int] | None = None
           ) -> list[tuple[int, Detection]]:
    """Keep detections whose label contains one of the comma-separated ``label_filter`` terms (any case),
    then the ``index`` positions (counted after the filter). Returns ``(index, detection)`` pairs."""
    terms = [t.strip().casefold() for t in (label_filter or "").split(",") if t.strip()]
    kept = [d for d in detections if not terms or any(t in d.label.casefold() for t in terms)]
    numbered = list(enumerate(kept))
    if index is None:
        return numbered
    missing = [i for i in index if i >= len(kept)]
    if missing:
        logger.warning("index %s: only %d detection(s) after the label filter; ignoring those.", missing, len(kept))
    return [numbered[i] for i in index if i < len(kept)]


def join_answers(texts: list[str]) -> str:
    """One answer as is; several answers each under a ``=== image N ===`` line (N from 1)."""
    if len(texts) == 1:
        return texts[0]
    return "\n\n".join(f"=== image {i} ===\n{t}" for i, t in enumerate(texts, 1))


def split_answers(text: str, batch: int) -> list[str]:
    """Inverse of :func:`join_answers` for a batch of ``batch`` images.

    Text without ``=== image N ===`` lines is one answer and applies to every image of the batch.
    Marked text must have one section per image, else an InputError naming ``text``.
    """
    text = text or ""
    marks = list(_IMAGE_MARKER.finditer(text))
    if not marks:
        return [text] * batch
    sections = {int(m.group(1)): text[m.end():(marks[k + 1].start() if k + 1 < len(marks) else len(text))]
                for k, m in enumerate(marks)}
    if sorted(sections) != list(range(1, batch + 1)):
        raise InputError("text", f"has answers for images {sorted(sections)} but the image batch has {batch} "
                         f"image(s).", "Connect the same image batch that produced the text, or text without "
                         "'=== image N ===' lines to apply one answer to every image.")
    return [sections[i].strip() for i in range(1, batch + 1)]


# ------------------------------------------------------------------------ any JSON (task parsers)


def json_values(text: str) -> tuple[list, bool, int]:
    """Every readable top-level JSON object in model text, whatever its keys (no box/point filter).

    The same reading as :func:`extract_objects` (thinking dropped, code fences, prose, single quotes,
    trailing commas); returns ``(values, whether any JSON was found, unreadable or cut-off count)``.
    Used by utils/task_parsers.py for answers without boxes (video events, tool calls, 3D boxes).
    """
    candidate = _candidate_text(text or "")
    values, found, unreadable = read_objects(candidate, MAX_DEPTH)
    return values, found or bool(_EMPTY_LIST.search(candidate)), unreadable
