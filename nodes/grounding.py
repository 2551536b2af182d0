"""Qwen3VL_Grounding (find objects -> pixel boxes, mask, preview) and Qwen3VL_ParseGrounding (text -> same)."""

from __future__ import annotations

from ..loaders.grounding import ground
from ..utils.grounding import COORD_MODES, GROUNDING_MODES
from ..utils.grounding_render import parse_text_outputs
from ..utils.node_options import (
    RUN_PRESET_TOOLTIP,
    SAMPLING_INPUT_TOOLTIP,
    SAMPLING_TYPE,
    run_options,
    thinking_input,
)
from ..utils.presets import FIXED_PRESET_NAMES
from . import comfy_services as comfy
from .loader import MODEL_TYPE

OUTPUT_TYPES = ("BBOX", "MASK", "IMAGE", "STRING")
OUTPUT_NAMES = ("bboxes", "mask", "preview", "json")
OUTPUT_TIPS = (
    "Pixel boxes [x1, y1, x2, y2] (x right, y down, from the top-left corner), one list per image of the batch "
    "(empty when nothing was found or only points); the BBOX input of SAM2 nodes (kijai's Sam2Segmentation).",
    "MASK [B, H, W], 1.0 inside any box (or a small disc around each point), 0.0 elsewhere.",
    "The input images, same size, with each box or point and 'index: label' drawn on it.",
    "Detections in pixels per image: index, label, bbox or point, plus how many objects were dropped "
    "(no area, unusable coordinates, cut off) and whether any JSON was found.",
)
SELECTION_INPUTS = {
    "label_filter": ("STRING", {"default": "", "tooltip": "Keep only detections whose label contains one of these "
                                "comma-separated words (any case), e.g. 'cat, dog'. Empty = keep all."}),
    "index": ("STRING", {"default": "", "tooltip": "Keep only these detections of each image, counted from 0 after "
                         "the label filter (the numbers in the preview), e.g. '0,2' or '1-3'. Empty = keep all."}),
}


class Qwen3VLGrounding:
    DESCRIPTION = ("Finds objects with Qwen3-VL / Qwen3.5: one grounding question per image of the batch (answered in one "
                   "batched run). Returns pixel boxes for SAM2-style segmenters, a mask, a preview with the boxes "
                   "drawn, the detections as JSON and the model's answer (shown on the node as it is written: the first "
                   "image's).")
    CATEGORY = "Qwen3-VL"
    FUNCTION = "ground"
    RETURN_TYPES = OUTPUT_TYPES + ("STRING",)
    RETURN_NAMES = OUTPUT_NAMES + ("text",)
    OUTPUT_TOOLTIPS = OUTPUT_TIPS + ("The model's answer (relative 0..1000 coordinates); with several images, one "
                                     "'=== image N ===' section per image, as Qwen3-VL Parse Grounding reads it.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL_TYPE, {"tooltip": "From Qwen3-VL Model Loader or Qwen3-VL Server Model."}),
                "image": ("IMAGE", {"tooltip": "Image batch; each image gets its own grounding question."}),
                "target": ("STRING", {"default": "cat", "tooltip": "What to find: a category ('cat'), a phrase "
                                      "('the red car') or several categories separated by commas ('cat, dog')."}),
                "mode": (list(GROUNDING_MODES), {"default": "boxes", "tooltip": "boxes: ask for bounding boxes. "
                         "points: ask for one point per object (bboxes stays empty; mask gets small discs)."}),
                "max_new_tokens": ("INT", {"default": 4096, "min": 1, "max": 40960, "tooltip": "Longest answer, in "
                                   "tokens (about 20 per box). A list cut off here keeps its complete objects. Thinking "
                                   "models reason first and need room (Qwen suggests up to 40960): stopped while "
                                   "still thinking is an error (no boxes are taken from the draft)."}),
                "preset": (list(FIXED_PRESET_NAMES), {"default": "Greedy", "tooltip": RUN_PRESET_TOOLTIP}),
            },
            "optional": dict(SELECTION_INPUTS, max_visual_tokens=(
                "INT", {"default": 1280, "min": 0, "max": 16384, "tooltip": "Most visual tokens per image (1 token "
                        "= 32x32 pixels); larger images are downscaled for the model (boxes still come back in "
                        "pixels of your image). 0 = model default."}),
                sampling=(SAMPLING_TYPE, {"tooltip": SAMPLING_INPUT_TOOLTIP}), thinking=thinking_input("off")),
        }

    def ground(self, model, image, target, mode, max_new_tokens, preset, label_filter="", index="",
               max_visual_tokens=1280, sampling=None, thinking="off"):
        options = run_options(preset, max_new_tokens, sampling, thinking)
        feedback = comfy.NodeFeedback(max_new_tokens)
        outputs, text = ground(model, image, target, mode, options, label_filter, index, max_visual_tokens,
                               on_step=feedback.on_step, on_text=feedback.on_text)
        feedback.finish()
        return outputs.as_tuple() + (text,)


class Qwen3VLParseGrounding:
    DESCRIPTION = ("Reads grounding text from anywhere (Qwen3-VL Generate, an API node, pasted JSON): boxes or "
                   "points in JSON, even inside code fences or prose, with single quotes, trailing commas or cut "
                   "off. Returns pixel boxes, a mask, a preview and JSON. No JSON found = empty outputs and a warning.")
    CATEGORY = "Qwen3-VL"
    FUNCTION = "parse"
    RETURN_TYPES = OUTPUT_TYPES
    RETURN_NAMES = OUTPUT_NAMES
    OUTPUT_TOOLTIPS = OUTPUT_TIPS

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "text": ("STRING", {"multiline": True, "default": "", "tooltip": "Model answer with JSON like "
                         "[{\"bbox_2d\": [x1, y1, x2, y2], \"label\": \"cat\"}] or point_2d [x, y]. One answer applies "
                         "to every image of the batch; '=== image N ===' sections (as Qwen3-VL Grounding writes "
                         "them) need one section per image, else an error."}),
                "image": ("IMAGE", {"tooltip": "The image(s) the answer is about; coordinates are mapped to its size."}),
                "coord_mode": (list(COORD_MODES), {"default": "qwen3", "tooltip": "qwen3: relative 0..1000 (Qwen3-VL). "
                               "qwen2.5: absolute pixels of the image Qwen2.5-VL saw after resizing (see resized_*). "
                               "normalized: 0..1. pixels: already pixels of this image. Values are clamped to the image."}),
            },
            "optional": dict(SELECTION_INPUTS, **{
                name: ("INT", {"default": 0, "min": 0, "max": 32768, "tooltip": f"qwen2.5 only: {side} of the image "
                               "the model saw after resizing. 0 = Qwen2.5-VL's default resize (28-pixel grid, at most "
                               "12.8 megapixels)."}) for name, side in (("resized_width", "width"),
                                                                        ("resized_height", "height"))}),
        }

    def parse(self, text, image, coord_mode, label_filter="", index="", resized_width=0, resized_height=0):
        return parse_text_outputs(text, image, coord_mode, label_filter, index, resized_width,
                                  resized_height).as_tuple()
