"""Task answers -> the one fixed set of outputs of Qwen3VL_Task and Qwen3VL_ParseTask.

Every task fills the same outputs (a node's output types cannot depend on a widget); what does not apply
to a task is empty but of the right type: ``""``, ``[]`` JSON, a BBOX list with an empty list per image,
an all-zero MASK, the input image unchanged as the preview, and ``[""]`` for the two list outputs (an
empty ComfyUI list would make the next node run with no input at all).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

import torch

from .boxes3d import DEFAULT_FOV, camera_from_fov, draw_overlays, extent, project
from .document_parse import parse_html, parse_markdown
from .errors import InputError
from .grounding import Detection, join_answers, split_answers
from .grounding_render import detections_mask, draw_preview
from .images import check_image_batch
from .task_parsers import (
    describe,
    event_frames,
    format_time,
    parse_boxes_3d,
    parse_events,
    parse_gui,
    parse_plain,
    parse_points,
    parse_prompt,
    parse_spotting,
)
from .task_prompts import TASKS, check_task
from .video import check_frames

PLACEHOLDER_SIZE = 64  # preview/mask side when a text-only task has no image
TEXT_TASKS = ("ocr", "image prompt")
_MARKER = re.compile(r"^=== image \d+ ===[ \t]*$", re.MULTILINE)
COUNTERS = ("found_json", "dropped_zero_area", "dropped_invalid", "dropped_incomplete")


@dataclass
class TaskOutputs:
    """The node outputs, in RETURN_TYPES order (see nodes/task.py for what each holds per task)."""

    text: str
    document: str
    json: str
    bboxes: list
    mask: torch.Tensor
    preview: torch.Tensor
    points: str
    items: list[str]
    frames: list[str]
    raw: str

    def as_tuple(self) -> tuple:
        return (self.text, self.document, self.json, self.bboxes, self.mask, self.preview, self.points,
                self.items, self.frames, self.raw)


@dataclass
class _Page:
    """One image's parsed answer."""

    text: str = ""
    document: str = ""
    detections: list[Detection] = field(default_factory=list)
    wires: list = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    report: dict = field(default_factory=dict)


def _counters(result) -> dict:
    return {k: getattr(result, k) for k in COUNTERS if hasattr(result, k)}


def _geometry(d: Detection) -> dict:
    return {"bbox": list(d.box)} if d.box is not None else {"point": list(d.point)}


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _page(task: str, answer: str, width: int, height: int, fov: float) -> _Page:
    if task == "ocr":
        text = parse_plain(answer)
        return _Page(text=text, items=_lines(text), report={"text": text})
    if task == "image prompt":
        prompt = parse_prompt(answer)
        return _Page(text=prompt, items=[prompt] if prompt else [], report={"prompt": prompt})
    if task == "text spotting":
        r = parse_spotting(answer, width, height)
        lines = [{"index": i, "text": d.label, **_geometry(d)} for i, d in enumerate(r.detections)]
        return _Page("\n".join(d.label for d in r.detections), "", r.detections, [], [d.label for d in r.detections],
                     {"lines": lines, **_counters(r)})
    if task in ("document html", "document markdown"):
        r = (parse_html if task == "document html" else parse_markdown)(answer, width, height)
        elements = [{"index": i, "tag": tag, "text": d.label, **_geometry(d)}
                    for i, (tag, d) in enumerate(zip(r.tags, r.boxes.detections, strict=True))]
        return _Page(r.text, r.document, r.boxes.detections, [], [d.label for d in r.boxes.detections if d.label],
                     {"format": task.split()[1], "elements": elements, **_counters(r.boxes)})
    if task in ("points", "gui click"):
        r = (parse_points if task == "points" else parse_gui)(answer, width, height)
        points = [{"index": i, "label": d.label, **_geometry(d)} for i, d in enumerate(r.detections)]
        return _Page("\n".join(f"{i}: {describe(d)}" for i, d in enumerate(r.detections)), "", r.detections, [],
                     [d.label for d in r.detections], {"points": points, **_counters(r)})
    return _boxes_3d_page(answer, width, height, fov)


def _boxes_3d_page(answer: str, width: int, height: int, fov: float) -> _Page:
    r, camera = parse_boxes_3d(answer), camera_from_fov(width, height, fov)
    page = _Page(report={"fov": fov, "camera": vars(camera), "boxes": [], **_counters(r)})
    for i, box in enumerate(r.boxes):
        corners = project(box, camera)
        rect = extent(corners, width, height)
        page.wires.append((i, box.label, corners))
        if rect is not None:
            page.detections.append(Detection(box.label, box=rect))
        page.items.append(box.label)
        roll, pitch, yaw = box.rotation
        page.report["boxes"].append({"index": i, "label": box.label, "center": list(box.center),
                                     "size": list(box.size), "rotation": {"roll": roll, "pitch": pitch, "yaw": yaw},
                                     "bbox": list(rect) if rect else None, "drawn": corners is not None})
    page.text = "\n".join(f"{i}: {b.label} at {list(b.center)} m, size {list(b.size)} m" for i, b in enumerate(r.boxes))
    return page


def sam2_points(detections: list[Detection], width: int, height: int) -> str:
    """Points as kijai's Sam2Segmentation reads ``coordinates_positive``: ``[{"x": 12, "y": 34}, ...]``
    (it does ``json.loads``, then ``(c['x'], c['y'])``), whole pixels inside the image."""
    out = [{"x": min(max(math.floor(d.point[0] + 0.5), 0), width - 1),
            "y": min(max(math.floor(d.point[1] + 0.5), 0), height - 1)} for d in detections if d.point is not None]
    return json.dumps(out)


def _dump(report) -> str:
    return json.dumps(report, ensure_ascii=False, indent=2)


def image_task_outputs(task: str, texts: list[str], image, fov: float = DEFAULT_FOV) -> TaskOutputs:
    """One answer per image of ``image`` (ComfyUI IMAGE ``[B, H, W, C]``) -> the task outputs."""
    image = check_image_batch(image, "image")
    b, h, w, _ = image.shape
    if len(texts) != b:
        raise ValueError(f"{len(texts)} answers for {b} images")  # a bug in the caller, not a user error
    pages = [_page(task, t, w, h, fov) for t in texts]
    reports = [{"image": i, "width": w, "height": h, **p.report} for i, p in enumerate(pages)]
    if task == "3d boxes":
        preview = draw_overlays(image, [p.wires for p in pages])
    else:
        preview = draw_preview(image, [list(enumerate(p.detections)) for p in pages])
    documents = [p.document for p in pages]
    return TaskOutputs(
        text=join_answers([p.text for p in pages]), document=join_answers(documents) if any(documents) else "",
        json=_dump(reports), bboxes=[[list(d.box) for d in p.detections if d.box is not None] for p in pages],
        mask=detections_mask([p.detections for p in pages], h, w), preview=preview,
        points=sam2_points(pages[0].detections, w, h), items=[i for p in pages for i in p.items] or [""],
        frames=[""], raw=join_answers(texts))


def _float_frames(frames: torch.Tensor) -> torch.Tensor:
    return frames.float() / 255.0 if frames.dtype == torch.uint8 else frames


def events_outputs(text: str, video=None, video_fps: float = 0.0) -> TaskOutputs:
    """A video events answer -> events in seconds, one ``start:end`` frame slice per event, key frames."""
    if not (isinstance(video_fps, (int, float)) and math.isfinite(video_fps) and video_fps > 0):
        raise InputError("video_fps", f"must be the frame rate of the frames (> 0), got {video_fps!r}.",
                         "Connect the fps output of your video loader (core Get Video Components fps, VHS "
                         "video_info loaded_fps).")
    frames = check_frames(video, "video") if video is not None else None
    total = int(frames.shape[0]) if frames is not None else None
    r = parse_events(text)
    entries, lines, slices, firsts, outside = [], [], [], [], 0
    for event in r.events:
        if total is not None and event.start * video_fps > total - 0.5:
            outside += 1  # starts after the last frame
            continue
        first, last = event_frames(event, video_fps, total)
        line = f"{format_time(event.start)} - {format_time(event.end)}: {event.description}"
        entries.append({"index": len(entries), "start": event.start, "end": event.end,
                        "start_time": format_time(event.start), "end_time": format_time(event.end),
                        "start_frame": first, "end_frame": last, "description": event.description})
        lines, slices, firsts = lines + [line], slices + [f"{first}:{last + 1}"], firsts + [first]
    report = {"fps": video_fps, "frames": total, "duration": total / video_fps if total else None,
              "events": entries, **_counters(r), "dropped_outside": outside}
    if frames is not None:
        preview = check_image_batch(_float_frames(frames[firsts or [0]]), "video")
        preview = draw_overlays(preview, [[] for _ in range(preview.shape[0])], lines or [""])
    else:
        preview = torch.zeros(1, PLACEHOLDER_SIZE, PLACEHOLDER_SIZE, 3)
    n, h, w = preview.shape[:3]
    return TaskOutputs(text="\n".join(lines), document="", json=_dump(report), bboxes=[[] for _ in range(n)],
                       mask=torch.zeros(n, h, w), preview=preview, points="[]", items=lines or [""],
                       frames=slices or [""], raw=text)


def text_task_outputs(task: str, texts: list[str], preview_frames=None) -> TaskOutputs:
    """OCR or a prompt without an image to draw on (a video prompt, pasted text): a placeholder preview."""
    if preview_frames is not None:
        image = check_image_batch(_float_frames(check_frames(preview_frames, "video")[:1]), "video")
    else:
        image = torch.zeros(len(texts), PLACEHOLDER_SIZE, PLACEHOLDER_SIZE, 3)
    if image.shape[0] != len(texts):
        image = image[:1].expand(len(texts), -1, -1, -1)
    return image_task_outputs(task, texts, image)


def parse_task_text(text: str, task: str, image=None, video=None, video_fps: float = 0.0,
                    fov: float = DEFAULT_FOV) -> TaskOutputs:
    """Task text from anywhere (one answer for all images, or ``=== image N ===`` sections) -> outputs."""
    check_task(task)
    text = text or ""
    if TASKS[task].video:
        return events_outputs(text, video, video_fps)
    if image is None:
        if task not in TEXT_TASKS:
            raise InputError("image", f"is needed to map the {task} answer to pixels.",
                             "Connect the image (or image batch) the answer is about.")
        return text_task_outputs(task, split_answers(text, len(_MARKER.findall(text)) or 1), video)
    batch = check_image_batch(image, "image")
    return image_task_outputs(task, split_answers(text, batch.shape[0]), batch, fov)
