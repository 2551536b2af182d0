"""The pack's outputs in ComfyUI core's own types (core 0.33: ``BOUNDING_BOX`` = ``{x, y, width, height}``)."""

from __future__ import annotations

import math

from .errors import InputError

BOUNDING_BOX_TYPE = "BOUNDING_BOX"


def to_bounding_boxes(bboxes) -> list[list[dict[str, int]]]:
    """BBOX (one list of ``[x1, y1, x2, y2]`` pixel boxes per image) -> one list of core bounding boxes per image,
    ``{"x", "y", "width", "height"}`` in whole pixels (the box grown to whole pixels, never empty), the
    ``list[list[dict]]`` that core SAM3 Detect takes as per-image boxes."""
    if not isinstance(bboxes, (list, tuple)):
        raise InputError("bboxes", f"is not a BBOX list (got {type(bboxes).__name__}).",
                         "Connect the bboxes output of Qwen3-VL Grounding, Task or Parse Grounding.")
    out = []
    for i, image_boxes in enumerate(bboxes):
        if not isinstance(image_boxes, (list, tuple)):
            raise InputError("bboxes", f"image {i + 1}: expected a list of [x1, y1, x2, y2] boxes.",
                             "Connect a BBOX output of this pack (one list of boxes per image).")
        converted = []
        for box in image_boxes:
            if len(box) != 4 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in box):
                raise InputError("bboxes", f"image {i + 1}: {box!r} is not [x1, y1, x2, y2].",
                                 "Connect a BBOX output of this pack.")
            x1, y1 = math.floor(min(box[0], box[2])), math.floor(min(box[1], box[3]))
            x2, y2 = math.ceil(max(box[0], box[2])), math.ceil(max(box[1], box[3]))
            converted.append({"x": int(x1), "y": int(y1), "width": max(1, int(x2 - x1)), "height": max(1, int(y2 - y1))})
        out.append(converted)
    return out
