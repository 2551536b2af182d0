"""Qwen3VL_RunTask (Qwen3-VL's own tasks, lean: seed from a Sampling node, rare inputs from Task Options) and
Qwen3VL_TaskOptions.

Qwen3VL_Task (nodes/task.py) keeps its old widget layout, deprecated: saved workflows store widget values by
position, so removing its seed and rare widgets in place would shift every value after them. Old workflows load
and run as saved; new ones use this node.
"""

from __future__ import annotations

from ..loaders.vl_tasks import run_task
from ..utils.boxes3d import DEFAULT_FOV
from ..utils.node_options import (
    GENERATE_PRESETS,
    SAMPLING_INPUT_TOOLTIP,
    SAMPLING_TYPE,
    TASK_OPTIONS_INPUT_TOOLTIP,
    TASK_OPTIONS_TYPE,
    check_task_options,
    run_options,
    task_settings,
    thinking_input,
)
from ..utils.task_prompts import DEFAULT_STYLE, LANGUAGES, PROMPT_STYLES, TASK_NAMES, check_task
from . import comfy_services as comfy
from .loader import MODEL_TYPE
from .task import FOV_TIP, OUTPUT_LISTS, OUTPUT_NAMES, OUTPUT_TIPS, OUTPUT_TYPES, TASK_TIP, VIDEO_FPS_TIP

PRESET_TIP = ("Sampling settings published by Qwen. Greedy (default): no sampling, the same input gives the same "
              "output. VL: Instruct models on images (temperature 0.7, top_p 0.8, top_k 20, presence penalty 1.5). "
              "Text: (1.0, 1.0, 40, presence 2.0). Thinking: Thinking models (0.6, 0.95, 20). A connected Qwen3-VL "
              "Sampling node replaces the preset with its own values and seed.")
TASK_PRESETS = ("Greedy",) + tuple(p for p in GENERATE_PRESETS if p != "Greedy")


class Qwen3VLRunTask:
    DESCRIPTION = ("Runs one of Qwen3-VL's own tasks (on Qwen3-VL or Qwen3.5) with Qwen's official prompt and parses the answer: OCR, text "
                   "spotting, document to HTML/Markdown, points for SAM2/SAM3, 3D boxes, video events with frame "
                   "indices, a prompt for an image/video model, or where to click on a screenshot. Every task fills "
                   "the same outputs; the ones that do not apply are empty. The answer appears on the node as it is "
                   "written. Plug in: Qwen3-VL Sampling (seed, own sampling values), Qwen3-VL Task Options "
                   "(language hint, prompt style, field of view).")
    CATEGORY = "Qwen3-VL"
    FUNCTION = "run"
    RETURN_TYPES = OUTPUT_TYPES
    RETURN_NAMES = OUTPUT_NAMES
    OUTPUT_IS_LIST = OUTPUT_LISTS
    OUTPUT_TOOLTIPS = OUTPUT_TIPS

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL_TYPE, {"tooltip": "From Qwen3-VL Model Loader or Qwen3-VL Server Model."}),
                "task": (list(TASK_NAMES), {"default": "ocr", "tooltip": TASK_TIP}),
                "target": ("STRING", {"default": "", "tooltip": "points / 3d boxes: what to find ('cat', 'car, "
                                      "person'). gui click: the instruction ('click the Save button'). image prompt: "
                                      "an optional extra instruction. Not used by ocr, text spotting, documents "
                                      "and video events."}),
                "preset": (list(TASK_PRESETS), {"default": "Greedy", "tooltip": PRESET_TIP}),
                "max_new_tokens": ("INT", {"default": 0, "min": 0, "max": 40960, "tooltip": "Longest answer, in "
                                   "tokens. 0 = the task's default (documents and text spotting 4096, ocr and video "
                                   "events 2048, points and 3d boxes 1024, image prompt 1024, gui click 512)."}),
            },
            "optional": {
                "image": ("IMAGE", {"tooltip": "Image batch (every task but video events); each image gets its own "
                                    "answer, in one batched run."}),
                "video": ("IMAGE", {"tooltip": "video events (and image prompt without an image): the clip as a "
                                    "frame batch [frames, H, W, C], sampled at 2 frames per second, at most 64."}),
                "video_fps": ("FLOAT", {"forceInput": True, "tooltip": VIDEO_FPS_TIP}),
                "max_visual_tokens": ("INT", {"default": 0, "min": 0, "max": 16384, "tooltip": "Most visual tokens "
                                      "per image (1 token = 32x32 pixels); larger images are downscaled for the model, "
                                      "results still come back in pixels of your image. 0 = the task's default (2048 "
                                      "for ocr, text spotting and documents, 1280 otherwise)."}),
                "sampling": (SAMPLING_TYPE, {"tooltip": SAMPLING_INPUT_TOOLTIP}),
                "task_options": (TASK_OPTIONS_TYPE, {"tooltip": TASK_OPTIONS_INPUT_TOOLTIP}),
                "thinking": thinking_input("off"),
            },
        }

    def run(self, model, task, target, preset, max_new_tokens, image=None, video=None, video_fps=0.0,
            max_visual_tokens=0, sampling=None, task_options=None, thinking="off"):
        tokens = max_new_tokens or check_task(task).max_new_tokens
        options = run_options(preset, tokens, sampling, thinking)
        extra = task_settings(task_options)
        feedback = comfy.NodeFeedback(tokens)
        outputs = run_task(model, task, options, image, video, video_fps, target, extra.language, extra.style,
                           extra.fov, max_visual_tokens, on_step=feedback.on_step, on_text=feedback.on_text)
        feedback.finish()
        return outputs.as_tuple()


class Qwen3VLTaskOptions:
    DESCRIPTION = ("The inputs of Qwen3-VL Task that only some tasks read: the language hint (ocr, text spotting), "
                   "the kind and length of prompt (image prompt) and the camera's field of view (3d boxes). Connect "
                   "it to Task's task_options input; without it Task uses no hint, Flux medium and 60 degrees.")
    CATEGORY = "Qwen3-VL/options"
    FUNCTION = "options"
    RETURN_TYPES = (TASK_OPTIONS_TYPE,)
    RETURN_NAMES = ("task_options",)
    OUTPUT_TOOLTIPS = ("Connect to the task_options input of Qwen3-VL Task.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "language": (list(LANGUAGES), {"default": "auto", "tooltip": "ocr / text spotting: the language of "
                             "the text, as a hint (auto: no hint; Qwen3-VL reads 32 languages)."}),
                "style": (list(PROMPT_STYLES), {"default": DEFAULT_STYLE, "tooltip": "image prompt only: the kind "
                          "of prompt (Flux sentences, SDXL tags, Wan video motion, a plain detailed description) "
                          "and its length (short about 30 words / 15 tags, medium 80 / 30, long 200 / 60)."}),
                "fov": ("FLOAT", {"default": DEFAULT_FOV, "min": 1.0, "max": 179.0, "step": 0.5, "tooltip": FOV_TIP}),
            },
        }

    def options(self, language, style, fov):
        return (check_task_options(language, style, fov),)
