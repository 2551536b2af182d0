"""Qwen3VL_RunTask (Qwen3-VL's own tasks, lean: seed from a Sampling node, rare inputs from Task Options) and
Qwen3VL_TaskOptions.

Qwen3VL_Task (nodes/task.py) keeps its old widget layout, deprecated: saved workflows store widget values by
position, so removing its seed and rare widgets in place would shift every value after them. Old workflows load
and run as saved; new ones use this node.
"""

from __future__ import annotations

from ..loaders.vl_tasks import run_task
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
from ..utils.task_prompts import check_task
from . import comfy_services as comfy
from .loader import MODEL_TYPE
from .task import (
    FOV_INPUT,
    LANGUAGE_INPUT,
    MAX_NEW_TOKENS_INPUT,
    MEDIA_INPUTS,
    STYLE_INPUT,
    TARGET_TIP,
    TASK_INPUT,
    TaskOutputs,
)

PRESET_TIP = ("Sampling settings published by Qwen. Greedy (default): no sampling, the same input gives the same "
              "output. VL: Instruct models on images (temperature 0.7, top_p 0.8, top_k 20, presence penalty 1.5). "
              "Text: (1.0, 1.0, 40, presence 2.0). Thinking: Thinking models (0.6, 0.95, 20). A connected Qwen3-VL "
              "Sampling node replaces the preset with its own values and seed.")
TASK_PRESETS = ("Greedy",) + tuple(p for p in GENERATE_PRESETS if p != "Greedy")


class Qwen3VLRunTask(TaskOutputs):
    DESCRIPTION = ("Runs one of Qwen3-VL's own tasks (on Qwen3-VL or Qwen3.5) with Qwen's official prompt and parses the answer: OCR, text "
                   "spotting, document to HTML/Markdown, points for SAM2/SAM3, 3D boxes, video events with frame "
                   "indices, a prompt for an image/video model, or where to click on a screenshot. Every task fills "
                   "the same outputs; the ones that do not apply are empty. The answer appears on the node as it is "
                   "written. Plug in: Qwen3-VL Sampling (seed, own sampling values), Qwen3-VL Task Options "
                   "(language hint, prompt style, field of view).")
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL_TYPE, {"tooltip": "From Qwen3-VL Model Loader or Qwen3-VL Server Model."}),
                "task": TASK_INPUT,
                "target": ("STRING", {"default": "", "tooltip": TARGET_TIP + " Not used by ocr, text spotting, "
                                      "documents and video events."}),
                "preset": (list(TASK_PRESETS), {"default": "Greedy", "tooltip": PRESET_TIP}),
                "max_new_tokens": MAX_NEW_TOKENS_INPUT,
            },
            "optional": {
                **MEDIA_INPUTS,
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
                "language": LANGUAGE_INPUT,
                "style": STYLE_INPUT,
                "fov": FOV_INPUT,
            },
        }

    def options(self, language, style, fov):
        return (check_task_options(language, style, fov),)
