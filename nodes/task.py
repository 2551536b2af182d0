"""Qwen3VL_Task (the first layout, deprecated: kept so saved workflows load unchanged; new graphs use
Qwen3VL_RunTask in nodes/run_task.py) and Qwen3VL_ParseTask (task text -> the same outputs)."""

from __future__ import annotations

from ..loaders.vl_tasks import run_task
from ..utils.boxes3d import DEFAULT_FOV
from ..utils.node_options import thinking_input
from ..utils.presets import FIXED_PRESET_NAMES, FIXED_PRESET_TOOLTIP, resolve_options
from ..utils.task_prompts import DEFAULT_STYLE, LANGUAGES, PROMPT_STYLES, TASK_NAMES, check_task
from ..utils.task_render import parse_task_text
from . import comfy_services as comfy
from .loader import MODEL_TYPE

OUTPUT_TYPES = ("STRING", "STRING", "STRING", "BBOX", "MASK", "IMAGE", "STRING", "STRING", "STRING", "STRING")
OUTPUT_NAMES = ("text", "document", "json", "bboxes", "mask", "preview", "points", "items", "frames", "raw")
OUTPUT_LISTS = (False, False, False, False, False, False, False, True, True, False)
OUTPUT_TIPS = (
    "The readable result. ocr: the text in reading order. text spotting: one line per text line. document: the "
    "page as plain text. points / gui click: 'index: label (x, y)' in pixels. 3d boxes: one line per box. video "
    "events: 'mm:ss.ff - mm:ss.ff: description' per event. image prompt: the prompt. Several images: one "
    "'=== image N ===' section each.",
    "document html / document markdown: the HTML or Markdown itself (code fence removed). Empty for other tasks.",
    "Everything parsed, per image, in pixels (x right, y down, from the top-left corner) or seconds: text lines "
    "with boxes, document elements with tag and box, points, 3D boxes (centre, size, rotation, camera, 2D box), "
    "video events (start/end seconds, mm:ss.ff, first/last frame index), plus counts of what could not be read.",
    "Pixel boxes [x1, y1, x2, y2], one list per image (kijai's SAM2 'bboxes' input): text spotting lines, "
    "document html elements or document markdown Image/Table blocks, the 2D extent of each drawn 3D box. "
    "Empty lists for other tasks.",
    "MASK [B, H, W]: 1.0 inside every box, or a small disc around every point (points, gui click); all 0.0 "
    "for tasks without geometry.",
    "The image(s) with the boxes and their text, points or 3D wireframes drawn. video events: the first frame of "
    "each event with its time and description. Tasks without geometry: the image unchanged.",
    "points / gui click: the first image's points as kijai's Sam2Segmentation 'coordinates_positive' takes "
    "them, a JSON string [{\"x\": 120, \"y\": 88}, ...] in whole pixels. '[]' for other tasks.",
    "A list with one string per item: video events 'mm:ss.ff - mm:ss.ff: description', text spotting lines, "
    "document elements, point / 3D box labels, ocr lines, the image prompt of each image. [''] when empty. "
    "Nodes after it run once per item.",
    "video events: one frame slice 'first:last+1' per event (end excluded), the 'indexes' format of VHS "
    "Select Images, to cut each event out of the frame batch. [''] for other tasks. Nodes after it run once per "
    "event.",
    "The model's answer as written (with several images: one '=== image N ===' section each), for Qwen3-VL "
    "Parse Task or any other node.",
)
TASK_TIP = ("What to do. ocr: read all text. text spotting: text lines with boxes. document html / markdown: "
            "the page as QwenVL HTML (boxes on every element) or Markdown. points: one point per object (target). "
            "3d boxes: 3D boxes of the target (fov). video events: timed events of the video. image prompt: a "
            "prompt for an image/video model (style). gui click: where to click on a screenshot (target).")
FOV_TIP = ("3d boxes only: the camera's horizontal field of view in degrees, used to draw the projected boxes "
           "(Qwen's cookbook uses 60 when the camera is unknown).")
VIDEO_FPS_TIP = ("video events: the frame rate of the frames AS GIVEN, from your video loader (core Get Video "
                 "Components fps, VHS video_info loaded_fps). Timestamps and frame indices depend on it.")

TARGET_TIP = ("points / 3d boxes: what to find ('cat', 'car, person'). gui click: the instruction ('click the Save "
              "button'). image prompt: an optional extra instruction.")

# Input entries both Task nodes (and Task Options) show the same way: one definition each.
TASK_INPUT = (list(TASK_NAMES), {"default": "ocr", "tooltip": TASK_TIP})
LANGUAGE_INPUT = (list(LANGUAGES), {"default": "auto", "tooltip": "ocr / text spotting: the language of the text, as "
                  "a hint (auto: no hint; Qwen3-VL reads 32 languages)."})
STYLE_INPUT = (list(PROMPT_STYLES), {"default": DEFAULT_STYLE, "tooltip": "image prompt only: the kind of prompt "
               "(Flux sentences, SDXL tags, Wan video motion, a plain detailed description) and its length (short "
               "about 30 words / 15 tags, medium 80 / 30, long 200 / 60)."})
FOV_INPUT = ("FLOAT", {"default": DEFAULT_FOV, "min": 1.0, "max": 179.0, "step": 0.5, "tooltip": FOV_TIP})
MAX_NEW_TOKENS_INPUT = ("INT", {"default": 0, "min": 0, "max": 40960, "tooltip": "Longest answer, in tokens. 0 = the "
                        "task's default (documents and text spotting 4096, ocr and video events 2048, points and 3d "
                        "boxes 1024, image prompt 1024, gui click 512)."})
MEDIA_INPUTS = {
    "image": ("IMAGE", {"tooltip": "Image batch (every task but video events); each image gets its own answer, in "
                        "one batched run."}),
    "video": ("IMAGE", {"tooltip": "video events (and image prompt without an image): the clip as a frame batch "
                        "[frames, H, W, C], sampled at 2 frames per second, at most 64."}),
    "video_fps": ("FLOAT", {"forceInput": True, "tooltip": VIDEO_FPS_TIP}),
    "max_visual_tokens": ("INT", {"default": 0, "min": 0, "max": 16384, "tooltip": "Most visual tokens per image (1 "
                          "token = 32x32 pixels); larger images are downscaled for the model, results still come "
                          "back in pixels of your image. 0 = the task's default (2048 for ocr, text spotting and "
                          "documents, 1280 otherwise)."}),
}


class TaskOutputs:
    """What every Task node (and Parse Task) returns: the same ten outputs, in the same order."""
    CATEGORY = "Qwen3-VL"
    RETURN_TYPES = OUTPUT_TYPES
    RETURN_NAMES = OUTPUT_NAMES
    OUTPUT_IS_LIST = OUTPUT_LISTS
    OUTPUT_TOOLTIPS = OUTPUT_TIPS


class Qwen3VLTask(TaskOutputs):
    DEPRECATED = True  # hidden from search; saved workflows still load it with their values in place
    DESCRIPTION = ("Old layout of Qwen3-VL Task, kept so workflows saved with it load with every value in place. "
                   "New graphs: Qwen3-VL / Qwen3.5 Task (seed from Qwen3-VL Sampling, rare inputs from Qwen3-VL Task "
                   "Options). Runs one of Qwen3-VL's own tasks (on Qwen3-VL or Qwen3.5) with Qwen's official prompt "
                   "and parses the answer: OCR, text "
                   "spotting, document to HTML/Markdown, points for SAM2, 3D boxes, video events with frame "
                   "indices, a prompt for an image/video model, or where to click on a screenshot. Every task fills "
                   "the same outputs; the ones that do not apply are empty.")
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL_TYPE, {"tooltip": "From Qwen3-VL Model Loader."}),
                "task": TASK_INPUT,
                "target": ("STRING", {"default": "", "tooltip": TARGET_TIP + " Not used by the other tasks."}),
                "language": LANGUAGE_INPUT,
                "style": STYLE_INPUT,
                "fov": FOV_INPUT,
                "max_new_tokens": MAX_NEW_TOKENS_INPUT,
                "preset": (list(FIXED_PRESET_NAMES), {"default": "Greedy", "tooltip": FIXED_PRESET_TOOLTIP}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                                 "tooltip": "Sampling seed "
                                 "(ignored by Greedy). It does not change the random state of the rest of the graph."}),
            },
            "optional": {**MEDIA_INPUTS, "thinking": thinking_input("off")},
        }

    def run(self, model, task, target, language, style, fov, max_new_tokens, preset, seed, image=None, video=None,
            video_fps=0.0, max_visual_tokens=0, thinking="off"):
        tokens = max_new_tokens or check_task(task).max_new_tokens
        options = resolve_options(preset, tokens, seed, thinking=thinking)
        feedback = comfy.NodeFeedback(tokens)
        outputs = run_task(model, task, options, image, video, video_fps, target, language, style, fov,
                           max_visual_tokens, on_step=feedback.on_step, on_text=feedback.on_text)
        feedback.finish()
        return outputs.as_tuple()


class Qwen3VLParseTask(TaskOutputs):
    DESCRIPTION = ("Reads a Qwen3-VL task answer from anywhere (Qwen3-VL Generate, a served model, pasted text) and "
                   "returns the same outputs as Qwen3-VL Task: text lines with boxes, document HTML/Markdown with "
                   "element boxes, points for SAM2, 3D boxes, video events with frame indices. Code fences, prose "
                   "around the answer and answers cut off are fine; nothing readable = empty outputs.")
    FUNCTION = "parse"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "text": ("STRING", {"multiline": True, "default": "", "tooltip": "The model's answer to the task's "
                         "prompt. One answer applies to every image of the batch; '=== image N ===' sections (as "
                         "Qwen3-VL Task writes them in raw) need one section per image."}),
                "task": (list(TASK_NAMES), {"default": "text spotting", "tooltip": "Which task's answer this is "
                         "(how to read it): " + TASK_TIP}),
                "fov": FOV_INPUT,
            },
            "optional": {
                "image": ("IMAGE", {"tooltip": "The image(s) the answer is about: coordinates are mapped to its size. "
                                    "Needed by every task with boxes or points."}),
                "video": ("IMAGE", {"tooltip": "video events: the frame batch the answer is about (frame indices are "
                                    "clamped to it, the preview shows each event's first frame). Optional."}),
                "video_fps": ("FLOAT", {"forceInput": True, "tooltip": VIDEO_FPS_TIP}),
            },
        }

    def parse(self, text, task, fov, image=None, video=None, video_fps=0.0):
        return parse_task_text(text, task, image, video, video_fps, fov).as_tuple()

