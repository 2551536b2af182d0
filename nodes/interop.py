"""Qwen3VL_BBoxToBoundingBox: the pack's BBOX (kijai's SAM2 format) -> core BOUNDING_BOX (ComfyUI 0.33)."""

from __future__ import annotations

from ..utils.core_types import BOUNDING_BOX_TYPE, to_bounding_boxes


class Qwen3VLBBoxToBoundingBox:
    DESCRIPTION = ("Turns the pixel boxes of Qwen3-VL Grounding, Task or Parse Grounding (BBOX: [x1, y1, x2, y2], one "
                   "list per image, kijai's SAM2 format) into ComfyUI core's BOUNDING_BOX ({x, y, width, height}, "
                   "one list per image), e.g. for core SAM3 Detect's bboxes input (ComfyUI 0.33 and later).")
    CATEGORY = "Qwen3-VL"
    FUNCTION = "convert"
    RETURN_TYPES = (BOUNDING_BOX_TYPE,)
    RETURN_NAMES = ("bounding_boxes",)
    OUTPUT_TOOLTIPS = ("Core BOUNDING_BOX: one list of {x, y, width, height} (whole pixels) per image, in the same "
                       "order as the boxes came in.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"bboxes": ("BBOX", {"tooltip": "The bboxes output of Qwen3-VL Grounding, Task or "
                                                 "Parse Grounding (pixel boxes [x1, y1, x2, y2], one list per "
                                                 "image)."})}}

    def convert(self, bboxes):
        return (to_bounding_boxes(bboxes),)
