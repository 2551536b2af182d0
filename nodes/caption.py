"""Batch captioning nodes: Load Image Folder -> Batch Caption -> Save Captions.

Load Image Folder gives ComfyUI lists (OUTPUT_IS_LIST); Batch Caption and Save Captions take them
(INPUT_IS_LIST), so images of different sizes travel one by one and captions stay paired with their
image paths, in order.
"""

from __future__ import annotations

import logging

from ..loaders.batch import MAX_BATCH_SIZE, caption_images, make_job, progress_hooks
from ..utils.captions import POLICIES, STYLE_PROMPTS, STYLES, CutOffCaption, caption_report, save_captions
from ..utils.errors import InputError
from ..utils.image_files import (
    DEFAULT_EXTENSIONS,
    SORT_ORDERS,
    fit_pixels,
    folder_fingerprint,
    iter_readable,
    list_image_files,
    megapixel_budget,
    rgb_to_comfy,
)
from ..utils.images import check_image_batch, to_uint8_chw
from ..utils.node_options import (
    RUN_PRESET_TOOLTIP,
    SAMPLING_INPUT_TOOLTIP,
    SAMPLING_TYPE,
    run_options,
    thinking_input,
)
from ..utils.presets import FIXED_PRESET_NAMES
from ..utils.safe_files import printable
from . import comfy_services as comfy
from .loader import MODEL_TYPE

logger = logging.getLogger(__name__)
def _one(value, default=None):
    """A widget value as INPUT_IS_LIST delivers it (a list of one) -> the value."""
    if isinstance(value, list):
        value = value[0] if value else None
    return default if value is None else value


def _flatten_images(images) -> list:
    """IMAGE batches and/or a list of IMAGEs of any sizes -> one uint8 [3, H, W] tensor per image, in order."""
    batches = images if isinstance(images, list) else [images]
    return [img for batch in batches for img in to_uint8_chw(check_image_batch(batch, "images"), "images").unbind(0)]


class Qwen3VLBatchCaption:
    DESCRIPTION = ("Captions every image with Qwen3-VL / Qwen3.5: one caption per image, in input order, several images per "
                   "generate call. Takes an IMAGE batch or a list of IMAGEs of different sizes (e.g. from Qwen3-VL "
                   "Load Image Folder). Captions are one line each, with optional trigger words. The caption being "
                   "written appears on the node.")
    CATEGORY = "Qwen3-VL/caption"
    FUNCTION = "caption"
    INPUT_IS_LIST = True
    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("captions", "report")
    OUTPUT_IS_LIST = (True, False)
    OUTPUT_TOOLTIPS = ("One caption per input image, in the same order (always a list, even for one image). An "
                       "image whose answer was cut off while the model was still thinking gets an empty caption "
                       "that Qwen3-VL Save Captions does not write.",
                       "How many captions were made, and which images (1-based) were cut off while thinking, "
                       "with what to do about it.")

    @classmethod
    def INPUT_TYPES(cls):
        styles = "; ".join(f"{k}: {v}" for k, v in STYLE_PROMPTS.items())
        return {
            "required": {
                "model": (MODEL_TYPE, {"tooltip": "A model from Qwen3-VL Model Loader or Qwen3-VL Server Model."}),
                "images": ("IMAGE", {"tooltip": "Images to caption: an IMAGE batch, or a list of IMAGEs of any "
                                                "sizes (e.g. Qwen3-VL Load Image Folder). Every image gets a caption."}),
                "style": (list(STYLES), {"default": "training", "tooltip": "What to write. " + styles +
                                         "; custom: only custom_prompt."}),
                "batch_size": ("INT", {"default": 8, "min": 1, "max": MAX_BATCH_SIZE,
                                       "tooltip": "Images per generate call. Higher is faster until memory runs out; "
                                                  "captions are the same under Greedy."}),
                "preset": (list(FIXED_PRESET_NAMES), {"default": "Greedy", "tooltip": RUN_PRESET_TOOLTIP}),
                "max_new_tokens": ("INT", {"default": 2048, "min": 1, "max": 40960,
                                           "tooltip": "Longest caption, in tokens (about 3/4 of a word each). Thinking "
                                                      "models reason before the caption and need room (Qwen suggests "
                                                      "up to 40960): a caption cut off while still thinking is an "
                                                      "error, never a draft caption."}),
                "prefix": ("STRING", {"default": "", "tooltip": "Put before every caption, e.g. a trigger word "
                                      "'ohwx woman'; joined with ', '."}),
                "suffix": ("STRING", {"default": "", "tooltip": "Put after every caption; joined with ', '."}),
            },
            "optional": {
                "custom_prompt": ("STRING", {"multiline": True, "default": "",
                                             "tooltip": "Extra instruction appended to the style's prompt; with "
                                                        "style custom, the whole prompt."}),
                "max_visual_tokens": ("INT", {"default": 1280, "min": 0, "max": 16384,
                                              "tooltip": "Most visual tokens per image (1 token = 32x32 pixels); "
                                                         "larger images are downscaled. 0 = model default."}),
                "sampling": (SAMPLING_TYPE, {"tooltip": SAMPLING_INPUT_TOOLTIP}),
                "thinking": thinking_input("off"),
            },
        }

    def caption(self, model, images, style, batch_size, preset, max_new_tokens, prefix, suffix,
                custom_prompt=None, max_visual_tokens=None, sampling=None, thinking=None):
        options = run_options(_one(preset), _one(max_new_tokens), _one(sampling), _one(thinking, "off"))
        job = make_job(_one(style), options, _one(custom_prompt, ""), _one(batch_size), _one(prefix, ""),
                       _one(suffix, ""), 0, _one(max_visual_tokens, 1280))
        pixels = _flatten_images(images)
        state = {"done": 0}
        feedback = comfy.NodeFeedback(len(pixels) * options.max_new_tokens,
                                      heading=lambda: f"image {min(state['done'] + 1, len(pixels))} of {len(pixels)}")
        on_progress, on_step = progress_hooks(len(pixels), job, feedback.progress, comfy.check_interrupt)

        def progress(done: int, total: int) -> None:
            state["done"] = done
            on_progress(done, total)

        captions = caption_images(_one(model), pixels, job, on_step=on_step, on_progress=progress,
                                  on_text=feedback.on_text)
        feedback.finish()
        report = caption_report(captions, options.max_new_tokens)
        if any(isinstance(c, CutOffCaption) for c in captions):
            logger.warning("Batch Caption: %s", report)
        return (captions, report)


class Qwen3VLLoadImageFolder:
    DESCRIPTION = ("Loads the images of a folder as a list (each image keeps its own size) with their file paths, "
                   "for Qwen3-VL Batch Caption and Save Captions. EXIF rotation is applied; CMYK, palette, 16-bit "
                   "and transparent images become RGB (transparency on white); unreadable files are skipped and "
                   "logged. With skip_captioned, a re-run continues where the last one stopped.")
    CATEGORY = "Qwen3-VL/caption"
    FUNCTION = "load"
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("images", "paths")
    OUTPUT_IS_LIST = (True, True)
    OUTPUT_TOOLTIPS = ("The images, one list item per file, each [1, H, W, 3] at its own size.",
                       "The absolute path of each image, in the same order.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "directory": ("STRING", {"default": "", "tooltip": "Absolute path of the folder of images."}),
                "recursive": ("BOOLEAN", {"default": False, "tooltip": "Also load images in subfolders "
                                          "(hidden folders such as .git are skipped)."}),
                "extensions": ("STRING", {"default": DEFAULT_EXTENSIONS,
                                          "tooltip": "File extensions to load, comma-separated (case ignored)."}),
                "sort": (list(SORT_ORDERS), {"default": "natural", "tooltip": "natural: img2 before img10; "
                         "name: plain text order; modified: oldest file first."}),
                "limit": ("INT", {"default": 0, "min": 0, "max": 1_000_000,
                                  "tooltip": "Load at most this many images (0 = all). Every image is held in "
                                             "memory, so caption big folders in slices."}),
                "offset": ("INT", {"default": 0, "min": 0, "max": 1_000_000,
                                   "tooltip": "Skip this many images first (after sorting and skip_captioned)."}),
                "skip_captioned": ("BOOLEAN", {"default": True, "tooltip": "Leave out images that already have a "
                                               "caption file (<stem>.txt beside them, or in caption_dir)."}),
            },
            "optional": {
                "max_megapixels": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1000.0, "step": 0.1,
                                             "tooltip": "Downscale larger images to this many megapixels on "
                                                        "load to save memory (0 = keep full size)."}),
                "caption_dir": ("STRING", {"default": "", "tooltip": "Where skip_captioned looks for captions; "
                                           "empty = beside each image (set it to Save Captions' output_dir)."}),
                "caption_extension": ("STRING", {"default": ".txt", "tooltip": "Caption file extension for "
                                                 "skip_captioned (as in Save Captions)."}),
            },
        }

    @classmethod
    def IS_CHANGED(cls, directory, recursive=False, extensions=DEFAULT_EXTENSIONS, sort="natural", limit=0,
                   offset=0, skip_captioned=True, caption_dir="", caption_extension=".txt", **_):
        try:
            files, _done = list_image_files(directory, recursive, extensions, sort, limit, offset, skip_captioned,
                                            caption_dir, caption_extension)
        except (InputError, OSError):
            return float("nan")  # run the node so that it reports the problem
        return folder_fingerprint(files, caption_dir, caption_extension)

    def load(self, directory, recursive, extensions, sort, limit, offset, skip_captioned, max_megapixels=0.0,
             caption_dir="", caption_extension=".txt"):
        budget = megapixel_budget(max_megapixels)
        files, done = list_image_files(directory, recursive, extensions, sort, limit, offset, skip_captioned,
                                       caption_dir, caption_extension)
        unreadable = []
        loaded = [(p, rgb_to_comfy(fit_pixels(im, budget)))
                  for p, im in iter_readable(files, unreadable)]
        logger.info("loaded %d image(s) from %s (%d already captioned, left out)", len(loaded), printable(directory),
                    done)
        if unreadable:
            logger.warning("%d of %d file(s) unreadable, skipped: %s", len(unreadable), len(files),
                           ", ".join(printable(p.name) for p in unreadable))
        return ([t for _, t in loaded], [str(p) for p, _ in loaded])


class Qwen3VLSaveCaptions:
    DESCRIPTION = ("Writes each caption to <image stem><extension> (UTF-8, one line) beside its image or in "
                   "output_dir, where LoRA trainers look for it. By default an existing caption file is never "
                   "touched. Every target is checked before the first write; each write is atomic (an error "
                   "leaves the old file intact) and nothing is written outside the target folder. Shows a "
                   "report.")
    CATEGORY = "Qwen3-VL/caption"
    FUNCTION = "save"
    OUTPUT_NODE = True
    INPUT_IS_LIST = True
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("report",)
    OUTPUT_TOOLTIPS = ("What was written, appended and skipped, file by file.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "captions": ("STRING", {"forceInput": True, "tooltip": "Captions from Qwen3-VL Batch Caption."}),
                "paths": ("STRING", {"forceInput": True, "tooltip": "Image paths from Qwen3-VL Load Image Folder, "
                                     "in the same order as the captions."}),
                "policy": (list(POLICIES), {"default": "skip", "tooltip": "When a caption file exists: skip "
                           "(keep it; hand-written captions are safe), overwrite, or append as a new line."}),
                "extension": ("STRING", {"default": ".txt", "tooltip": "Caption file extension, e.g. .txt or "
                                         ".caption (image, video and model extensions are refused)."}),
            },
            "optional": {
                "output_dir": ("STRING", {"default": "", "tooltip": "Folder for the caption files (created if "
                                          "needed); empty = beside each image."}),
            },
        }

    def save(self, captions, paths, policy, extension, output_dir=None):
        report = save_captions(list(captions), list(paths), _one(policy), _one(output_dir, "") or "",
                               _one(extension, ".txt"))
        text = report.text()
        return {"ui": {"text": [text]}, "result": (text,)}
