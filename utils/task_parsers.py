"""Answers to Qwen3-VL's task prompts (utils/task_prompts.py) -> structured results in pixels and seconds.

Every parser reads what the model really writes: thinking before the answer, code fences, prose around
the JSON, single quotes, trailing commas, a list cut off by ``max_new_tokens``. It keeps everything
complete it can read, counts what it dropped, and never raises on model text (hostile nesting too).
Boxes and points go through :func:`utils.grounding.parse_grounding` (relative 0..1000 -> pixels).

    >>> parse_events('{"00:01.50 - 00:03.00": "a dog runs"}').events[0].start
    1.5
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .grounding import LABEL_KEYS, Detection, ParseResult, extract_objects, json_values, parse_grounding
from .task_prompts import GUI_SCREEN
from .text import split_thinking

logger = logging.getLogger(__name__)

_FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_-]*[ \t]*\r?\n?(.*?)(?:```|\Z)", re.DOTALL)
TEXT_KEYS = ("text_content", "text", "content", "transcription", "label")
_SEP = "\ue000"  # private-use character: tags a label with its object's index inside boxes_each
MAX_WALK = 100_000  # values visited while looking for events / boxes in one answer


def guarded(parse: Callable, default, *args):
    """``parse(*args)``, or ``default`` with a warning when the text is nested too deeply to read."""
    try:
        return parse(*args)
    except RecursionError:
        logger.warning("the answer is nested too deeply to read (hostile or broken JSON): ignored.")
        return default


def answer_text(text: str) -> str:
    """The answer without any thinking, stripped."""
    return split_thinking(text or "")[1] if "</think>" in (text or "") else (text or "").strip()


def unfenced(text: str) -> str:
    """The contents of the answer's code fences (an unclosed fence runs to the end), else the answer."""
    answer = answer_text(text)
    blocks = [m.group(1).strip("\r\n") for m in _FENCE.finditer(answer)]
    return "\n".join(blocks).strip() if blocks else answer


def _walk(values: list, wanted: Callable[[dict], bool]) -> list[dict]:
    """Dicts for which ``wanted`` is true, depth first and in order, also inside wrappers; no recursion."""
    found, stack, seen = [], [iter(values)], 0
    while stack and seen < MAX_WALK:
        item = next(stack[-1], StopIteration)
        if item is StopIteration:
            stack.pop()
            continue
        seen += 1
        if isinstance(item, dict):
            if wanted(item):
                found.append(item)
            else:
                stack.append(iter(item.values()))
        elif isinstance(item, (list, tuple)):
            stack.append(iter(item))
    return found


def _floats(value, count: int) -> tuple[float, ...] | None:
    """``[1, 2]``, ``["1", "2"]`` or ``"(1, 2)"`` -> ``count`` finite floats, or None."""
    if isinstance(value, str):
        value = re.findall(r"-?\d+(?:\.\d+)?", value[:200])
    if not isinstance(value, (list, tuple)) or len(value) != count:
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if all(math.isfinite(v) for v in out) else None


def _first_text(obj: dict, keys: tuple[str, ...]) -> str:
    for key in keys:
        value = obj.get(key)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value).strip()
    return ""


def _boxes(objects: list[dict], width: int, height: int) -> ParseResult:
    """Box/point dicts (already read) -> pixel detections through the grounding parser."""
    return parse_grounding(json.dumps(objects, ensure_ascii=False, default=str), width, height)


def boxes_each(objects: list[dict], width: int, height: int) -> tuple[ParseResult, list[int]]:
    """Like :func:`_boxes`, plus the index of the object each detection came from (some are dropped)."""
    tagged = [dict(o, label=f"{i}{_SEP}{o.get('label', '')}") for i, o in enumerate(objects)]
    result, kept = _boxes(tagged, width, height), []
    for k, detection in enumerate(result.detections):
        index, _, label = detection.label.partition(_SEP)
        result.detections[k] = Detection(label, detection.box, detection.point)
        kept.append(int(index))
    result.found_json = True
    return result, kept


# ----------------------------------------------------------------------------------- text spotting


def parse_spotting(text: str, width: int, height: int) -> ParseResult:
    """``[{"bbox_2d": [...], "text_content": "..."}]`` -> detections whose label is the line's text."""
    objects, found, unreadable = guarded(extract_objects, ([], False, 0), text)
    lines = [dict(o, label=_first_text(o, TEXT_KEYS)) for o in objects]
    result = _boxes(lines, width, height)
    result.found_json, result.dropped_incomplete = found, unreadable
    return result


def parse_points(text: str, width: int, height: int) -> ParseResult:
    """``point_2d`` answers (boxes too, if the model gave boxes) -> pixel detections."""
    return guarded(parse_grounding, ParseResult(), text, width, height)


# --------------------------------------------------------------------------------------- GUI click


def _tool_arguments(obj: dict) -> dict:
    args = obj.get("arguments", obj)
    if isinstance(args, str):
        values, _, _ = guarded(json_values, ([], False, 0), args)
        args = values[0] if values else {}
    return args if isinstance(args, dict) else {}


def parse_gui(text: str, width: int, height: int) -> ParseResult:
    """A ``<tool_call>`` with ``"coordinate": [x, y]`` on the 999x999 screen (mobile_agent.ipynb), or a
    ``point_2d`` answer (0..1000) -> pixel points labelled with the action (e.g. ``left_click``)."""
    values, found, unreadable = guarded(json_values, ([], False, 0), text)
    calls = _walk(values, lambda d: "coordinate" in _tool_arguments(d) or "point_2d" in d)
    points = []
    for call in calls:
        if "point_2d" in call:
            points.append(call)
            continue
        args = _tool_arguments(call)
        xy = _floats(args.get("coordinate"), 2)
        label = _first_text(args, ("action",)) or _first_text(call, ("name",))
        points.append({"point_2d": [v * 1000.0 / GUI_SCREEN for v in xy] if xy else None, "label": label})
    result = _boxes(points, width, height)
    result.found_json, result.dropped_incomplete = found, unreadable
    return result


# --------------------------------------------------------------------------------------- 3D boxes


@dataclass(frozen=True)
class Box3D:
    """``bbox_3d`` as Qwen3-VL writes it: camera coordinates in metres, then three rotation values."""

    label: str
    center: tuple[float, float, float]
    size: tuple[float, float, float]
    rotation: tuple[float, float, float]  # as written (roll, pitch, yaw by the prompt's format)


@dataclass
class Boxes3DResult:
    boxes: list[Box3D] = field(default_factory=list)
    found_json: bool = False
    dropped_invalid: int = 0
    dropped_incomplete: int = 0


def parse_boxes_3d(text: str) -> Boxes3DResult:
    """``[{"bbox_3d": [x, y, z, x_size, y_size, z_size, roll, pitch, yaw], "label": ...}]`` -> boxes."""
    values, found, unreadable = guarded(json_values, ([], False, 0), text)
    result = Boxes3DResult(found_json=found, dropped_incomplete=unreadable)
    for obj in _walk(values, lambda d: any(k in d for k in ("bbox_3d", "box_3d", "bbox3d"))):
        raw = next(obj[k] for k in ("bbox_3d", "box_3d", "bbox3d") if k in obj)
        nums = _floats(raw, 9)
        if nums is None or min(nums[3:6]) <= 0:
            result.dropped_invalid += 1
            continue
        result.boxes.append(Box3D(_first_text(obj, LABEL_KEYS), nums[0:3], nums[3:6], nums[6:9]))
    if not found:
        logger.warning("no JSON object found in the 3D box answer (%d characters).", len(text or ""))
    return result


# ------------------------------------------------------------------------------------ video events

_T = r"\d{1,6}(?::\d{1,2}){0,2}(?:\.\d{1,6})?"
_UNIT = r"(?:[ \t]{0,3}(?:s|sec|secs|seconds)\b)?"
_TIME = re.compile(rf"^<?[ \t]{{0,3}}({_T}){_UNIT}[ \t]{{0,3}}>?$")
_RANGE = re.compile(rf"<?({_T}){_UNIT}>?[ \t]{{0,3}}(?:-|–|—|~|to)[ \t]{{0,3}}<?({_T}){_UNIT}>?")
_QUOTED_TAIL = re.compile(r'^[ \t]{0,3}"?[ \t]{0,3}[:=][ \t]{0,3}"((?:[^"\\]|\\.)*)"')
_OPEN_QUOTED_TAIL = re.compile(r'^[ \t]{0,3}"?[ \t]{0,3}[:=][ \t]{0,3}"')
_PLAIN_TAIL = re.compile(r"^[ \t]{0,3}[:,\-–—]?[ \t]{0,3}(\S.*)$")
START_KEYS = ("start_time", "start", "begin", "begin_time", "start_timestamp", "from")
END_KEYS = ("end_time", "end", "finish", "end_timestamp", "stop", "to")
SPAN_KEYS = ("timestamp", "timestamps", "time", "time_range", "span", "interval")
DESCRIPTION_KEYS = ("description", "event", "caption", "text", "content", "sentence", "action", "activity",
                    "summary", "label")


@dataclass(frozen=True)
class Event:
    start: float  # seconds in the clip
    end: float
    description: str


@dataclass
class EventsResult:
    events: list[Event] = field(default_factory=list)
    found_json: bool = False
    dropped_invalid: int = 0
    dropped_incomplete: int = 0


def parse_time(value) -> float | None:
    """``"mm:ss.ff"``, ``"hh:mm:ss.ff"``, ``"12.5"``, ``"12.5s"``, ``"<12.5 seconds>"`` or a number -> seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if math.isfinite(value) and value >= 0 else None
    if not isinstance(value, str):
        return None
    m = _TIME.match(value.strip()[:40])
    if not m:
        return None
    seconds = 0.0
    for part in m.group(1).split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def _span(value) -> tuple[float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        start, end = parse_time(value[0]), parse_time(value[1])
        return (start, end) if start is not None and end is not None else None
    if isinstance(value, str):
        m = _RANGE.fullmatch(value.strip()[:80])
        if m:
            return parse_time(m.group(1)), parse_time(m.group(2))
    return None


def _dict_events(obj: dict) -> list[tuple[float, float, str]] | None:
    """One event dict, or a ``{"mm:ss.ff - mm:ss.ff": "description"}`` mapping; None if neither."""
    start = next((obj[k] for k in START_KEYS if k in obj), None)
    end = next((obj[k] for k in END_KEYS if k in obj), None)
    description = _first_text(obj, DESCRIPTION_KEYS)
    if start is not None and end is not None:
        s, e = parse_time(start), parse_time(end)
        return [(s, e, description)] if s is not None and e is not None else [(-1.0, -1.0, description)]
    span = next((_span(obj[k]) for k in SPAN_KEYS if k in obj), None)
    if span is not None:
        return [(span[0], span[1], description)]
    ranged = [(_span(k), v) for k, v in obj.items() if isinstance(k, str)]
    if ranged and all(r is not None and isinstance(v, str) for r, v in ranged):
        return [(r[0], r[1], v.strip()) for r, v in ranged]
    return None


def _salvage(candidate: str) -> tuple[list[tuple[float, float, str]], int]:
    """Events from lines with a time range (plain-text answers, a JSON mapping cut off); cut lines counted."""
    found, cut = [], 0
    for line in candidate.splitlines():
        m = _RANGE.search(line[:2000])
        if not m:
            continue
        tail = line[m.end():]
        quoted, plain = _QUOTED_TAIL.match(tail), _PLAIN_TAIL.match(tail)
        if quoted:
            description = quoted.group(1).replace('\\"', '"')
        elif plain and '"' not in tail:
            description = plain.group(1).rstrip(" ,;")
        else:
            cut += bool(_OPEN_QUOTED_TAIL.match(tail))  # '"mm:ss - mm:ss": "unfinished' (cut off)
            continue
        found.append((parse_time(m.group(1)), parse_time(m.group(2)), description.strip()))
    return found, cut


def parse_events(text: str) -> EventsResult:
    """Video event answers -> events in seconds, in the model's order (start and end put in order)."""
    values, found, unreadable = guarded(json_values, ([], False, 0), text)
    raw: list[tuple[float, float, str]] = []
    for obj in _walk(values, lambda d: _dict_events(d) is not None):
        raw += _dict_events(obj) or []
    cut = 0
    if unreadable or not raw:
        salvaged, cut = _salvage(unfenced(text))
        raw += [r for r in salvaged if r not in raw]
    result = EventsResult(found_json=found, dropped_incomplete=max(unreadable, cut))
    for start, end, description in raw:
        if start is None or end is None or start < 0 or end < 0:
            result.dropped_invalid += 1
            continue
        result.events.append(Event(min(start, end), max(start, end), description))
    if not result.events and not found:
        logger.warning("no video events found in the answer (%d characters).", len(text or ""))
    return result


def format_time(seconds: float) -> str:
    """Seconds -> ``mm:ss.ff`` (the prompt's format; minutes go past 59 for long clips)."""
    hundredths = int(round(seconds * 100))
    return f"{hundredths // 6000:02d}:{hundredths % 6000 / 100:05.2f}"


def event_frames(event: Event, fps: float, total: int | None = None) -> tuple[int, int]:
    """First and last frame index (inclusive) of ``event`` at ``fps``; clamped to ``total`` frames."""
    first, last = math.floor(event.start * fps + 0.5), math.floor(event.end * fps + 0.5)
    if total is not None:
        first, last = min(first, total - 1), min(last, total - 1)
    return first, max(first, last)


# ------------------------------------------------------------------------------- text answers


def parse_plain(text: str) -> str:
    """OCR text: the answer without thinking or a code fence around it."""
    return unfenced(text)


_LABEL_PREFIX = re.compile(r"^\s*(?:\*\*)?(?:prompt|tags|description)(?:\*\*)?\s*:\s*(?:\*\*)?\s*", re.IGNORECASE)


def parse_prompt(text: str) -> str:
    """An image/video-model prompt: no thinking, fence, 'Prompt:' label or quotes around it."""
    prompt = _LABEL_PREFIX.sub("", unfenced(text), count=1).strip()
    if len(prompt) >= 2 and prompt[0] == prompt[-1] and prompt[0] in "\"'“”":
        prompt = prompt[1:-1].strip()
    return prompt


def split_tags(prompt: str) -> list[str]:
    """A comma-separated tag prompt -> its tags (empty ones dropped)."""
    return [t.strip() for t in re.split(r"[,\n]", prompt) if t.strip()]


def describe(detection: Detection) -> str:
    """One readable line for a detection: ``label (x, y)`` or ``label [x1, y1, x2, y2]``."""
    where = detection.point if detection.point is not None else detection.box
    return f"{detection.label or '?'} {list(where) if detection.box is not None else tuple(where)}"
