"""Detections in pixels -> what ComfyUI graphs use: BBOX lists, a MASK, a preview IMAGE, a JSON string.

``BBOX`` is the structure kijai's SAM2 nodes iterate over (``for bbox_list in bboxes: for bbox in
bbox_list``): one list per image of ``[x1, y1, x2, y2]`` pixel boxes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .errors import InputError
from .grounding import Detection, ParseResult, parse_grounding, parse_index, select, split_answers
from .images import as_float01, check_image_batch

logger = logging.getLogger(__name__)

COLORS = ((255, 64, 64), (64, 200, 64), (64, 128, 255), (255, 200, 0), (255, 128, 0), (200, 64, 255),
          (0, 220, 220), (255, 96, 180), (160, 255, 64), (140, 90, 40))


@dataclass
class GroundingOutputs:
    """The four outputs shared by the grounding nodes, in node output order."""

    bboxes: list[list[list[float]]]
    mask: torch.Tensor
    preview: torch.Tensor
    json: str

    def as_tuple(self) -> tuple:
        return self.bboxes, self.mask, self.preview, self.json


def point_radius(height: int, width: int) -> int:
    """Radius of the disc marking a point in the mask and the preview: 1% of the short side, >= 2 px."""
    return max(2, round(min(height, width) * 0.01))


def _pixel_span(lo: float, hi: float, limit: int) -> tuple[int, int]:
    a = min(max(round(lo), 0), limit)
    b = min(max(round(hi), 0), limit)
    if b <= a:  # a box thinner than a pixel still covers one
        a, b = (a, a + 1) if a < limit else (limit - 1, limit)
    return a, b


def detections_mask(picked: list[list[Detection]], height: int, width: int) -> torch.Tensor:
    """MASK ``[B, H, W]`` float32: 1 inside any box (pixel spans rounded) or point disc, 0 elsewhere."""
    mask = torch.zeros(len(picked), height, width, dtype=torch.float32)
    yy, xx = torch.meshgrid(torch.arange(height, dtype=torch.float32) + 0.5,
                            torch.arange(width, dtype=torch.float32) + 0.5, indexing="ij")
    radius = point_radius(height, width)
    for b, detections in enumerate(picked):
        for det in detections:
            if det.box is not None:
                x0, x1 = _pixel_span(det.box[0], det.box[2], width)
                y0, y1 = _pixel_span(det.box[1], det.box[3], height)
                mask[b, y0:y1, x0:x1] = 1.0
            elif det.point is not None:
                disc = (xx - det.point[0]) ** 2 + (yy - det.point[1]) ** 2 <= radius * radius
                mask[b][disc] = 1.0
    return mask


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1 or no FreeType: the small bitmap font
        return ImageFont.load_default()


def draw_preview(image: torch.Tensor, picked: list[list[tuple[int, Detection]]]) -> torch.Tensor:
    """The image batch ``[B, H, W, 3]`` with boxes, points and ``index: label`` drawn; same size.

    Pixels that no drawing touches keep their exact input values.
    """
    b, h, w, _ = image.shape
    line = max(2, round(min(h, w) / 250))
    font = _font(max(10, round(min(h, w) / 40)))
    radius = max(4, point_radius(h, w))
    frames = (image.detach().cpu().float().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    out = []
    for i in range(b):
        pil = Image.fromarray(frames[i])
        draw = ImageDraw.Draw(pil)
        for idx, det in picked[i]:
            color = COLORS[idx % len(COLORS)]
            if det.box is not None:
                x1, y1, x2, y2 = det.box
                draw.rectangle((x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)), outline=color, width=line)
                anchor = (x1 + line, y1 + line)
            else:
                x, y = det.point
                draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=color, outline=(0, 0, 0))
                anchor = (x + radius + 1, y + radius + 1)
            caption = f"{idx}: {det.label}" if det.label else str(idx)
            left, top, right, bottom = draw.textbbox(anchor, caption, font=font)
            draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=color)
            draw.text(anchor, caption, fill=(0, 0, 0), font=font)
        drawn = np.asarray(pil)
        changed = torch.from_numpy((drawn != frames[i]).any(axis=-1))
        frame = image[i].detach().cpu().float().clone()  # untouched pixels keep their exact values
        frame[changed] = torch.from_numpy(drawn[changed.numpy()].astype(np.float32) / 255.0)
        out.append(frame)
    return torch.stack(out)


def _detection_dict(idx: int, det: Detection) -> dict:
    entry: dict = {"index": idx, "label": det.label}
    if det.box is not None:
        entry["bbox"] = list(det.box)
    else:
        entry["point"] = list(det.point)
    return entry


def grounding_outputs(image, texts: list[str], coord_mode: str = "qwen3", label_filter: str = "",
                      index: str = "", resized: tuple[int, int] | None = None) -> GroundingOutputs:
    """One answer per image of ``image`` (ComfyUI IMAGE ``[B, H, W, C]``) -> BBOX, MASK, preview, JSON."""
    image = as_float01(check_image_batch(image, "image"))  # the preview is a float 0..1 IMAGE, whatever came in
    b, h, w, _ = image.shape
    if len(texts) != b:
        raise ValueError(f"{len(texts)} answers for {b} images")  # a bug in the caller, not a user error
    wanted = parse_index(index)
    parsed: list[ParseResult] = [parse_grounding(t, w, h, coord_mode, resized) for t in texts]
    picked = [select(p.detections, label_filter, wanted) for p in parsed]
    bboxes = [[list(d.box) for _, d in pairs if d.box is not None] for pairs in picked]
    mask = detections_mask([[d for _, d in pairs] for pairs in picked], h, w)
    preview = draw_preview(image, picked)
    report = [{"image": i, "width": w, "height": h, "coord_mode": coord_mode,
               "detections": [_detection_dict(idx, d) for idx, d in picked[i]],
               "found_json": p.found_json, "dropped_zero_area": p.dropped_zero_area,
               "dropped_invalid": p.dropped_invalid, "dropped_incomplete": p.dropped_incomplete}
              for i, p in enumerate(parsed)]
    return GroundingOutputs(bboxes, mask, preview, _report_json(report))


def _report_json(report: list[dict]) -> str:
    """JSON with one line per image header and one line per detection (readable in a text preview)."""
    images = []
    for entry in report:
        head = {k: v for k, v in entry.items() if k != "detections"}
        dets = ",\n".join("    " + json.dumps(d, ensure_ascii=False) for d in entry["detections"])
        images.append("  " + json.dumps(head, ensure_ascii=False)[:-1] + ', "detections": ['
                      + (f"\n{dets}\n  ]}}" if dets else "]}"))
    return "[\n" + ",\n".join(images) + "\n]"


def parse_text_outputs(text: str, image, coord_mode: str = "qwen3", label_filter: str = "", index: str = "",
                       resized_width: int = 0, resized_height: int = 0) -> GroundingOutputs:
    """Grounding text from anywhere (one answer for all images, or ``=== image N ===`` sections) -> outputs."""
    image = check_image_batch(image, "image")
    if (resized_width > 0) != (resized_height > 0):
        unset = "resized_width" if resized_width <= 0 else "resized_height"
        raise InputError(unset, "is 0 while the other resized size is set.",
                         "Set both resized_width and resized_height (Qwen2.5-VL's resized image), or leave both at 0.")
    resized = (resized_width, resized_height) if resized_width > 0 else None
    texts = split_answers(text, image.shape[0])
    return grounding_outputs(image, texts, coord_mode, label_filter, index, resized)
