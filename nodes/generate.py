"""Qwen3VL_Generate: prompt (+ images) -> text, thinking, info."""

from __future__ import annotations

from pathlib import Path

from ..loaders.tasks import ask
from ..utils.images import image_batch_to_list
from ..utils.presets import PRESET_NAMES, PRESET_TOOLTIP, resolve_options
from ..utils.text import format_info
from . import comfy_services as comfy
from .loader import MODEL_TYPE


class Qwen3VLGenerate:
    DESCRIPTION = ("Asks Qwen3-VL a question, with optional images (every image of the batch goes into the same "
                   "question, in order). Returns the answer, the model's thinking (Thinking models) and a "
                   "debugging report.")
    CATEGORY = "Qwen3-VL"
    FUNCTION = "generate"
    RETURN_TYPES = ("STRING", "STRING", "STRING")
    RETURN_NAMES = ("text", "thinking", "info")
    OUTPUT_TOOLTIPS = (
        "The answer, without any <think>...</think> part.",
        "The reasoning inside <think>...</think> (Thinking models); empty otherwise.",
        "For debugging: the rendered prompt (vision tokens collapsed, e.g. <|image_pad|>×80), token counts, "
        "visual tokens per image, time and tokens per second.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL_TYPE, {"tooltip": "From Qwen3-VL Model Loader."}),
                "prompt": ("STRING", {"multiline": True, "default": "Describe this image.",
                                      "tooltip": "Your question or instruction."}),
                "preset": (list(PRESET_NAMES), {"default": "VL", "tooltip": PRESET_TOOLTIP}),
                "max_new_tokens": ("INT", {"default": 512, "min": 1, "max": 40960,
                                           "tooltip": "Longest answer, in tokens (about 3/4 of a word each)."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                                 "tooltip": "Sampling seed. The same seed and inputs give the same answer; it does "
                                            "not change the random state of the rest of the graph."}),
            },
            "optional": {
                "system_prompt": ("STRING", {"multiline": True, "default": "",
                                             "tooltip": "Optional system instruction (role, style, output format)."}),
                "image": ("IMAGE", {"tooltip": "Optional image batch; every image goes into the question, in order. "
                                               "Grey images become RGB; an alpha channel is dropped."}),
                "temperature": ("FLOAT", {"default": 0.7, "min": 0.0, "max": 2.0, "step": 0.01,
                                          "tooltip": "Custom preset only: randomness (> 0). Lower is more focused."}),
                "top_p": ("FLOAT", {"default": 0.8, "min": 0.0, "max": 1.0, "step": 0.01,
                                    "tooltip": "Custom preset only: nucleus sampling mass in (0, 1]."}),
                "top_k": ("INT", {"default": 20, "min": 0, "max": 1000,
                                  "tooltip": "Custom preset only: sample among the k likeliest tokens (0 = no limit)."}),
                "repetition_penalty": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 3.0, "step": 0.01,
                                                 "tooltip": "Custom preset only: > 1 discourages repeating any "
                                                            "earlier token (1.0 = off)."}),
                "presence_penalty": ("FLOAT", {"default": 1.5, "min": 0.0, "max": 2.0, "step": 0.05,
                                               "tooltip": "Custom preset only: subtracted from the score of every "
                                                          "token already generated (0 = off; Qwen uses 1.5)."}),
                "min_visual_tokens": ("INT", {"default": 0, "min": 0, "max": 16384,
                                              "tooltip": "Fewest visual tokens per image (1 token = 32x32 pixels); "
                                                         "small images are upscaled to reach it. 0 = model default."}),
                "max_visual_tokens": ("INT", {"default": 1280, "min": 0, "max": 16384,
                                              "tooltip": "Most visual tokens per image (1 token = 32x32 pixels); "
                                                         "large images are downscaled. Qwen's examples use 1280. "
                                                         "0 = model default."}),
            },
        }

    def generate(self, model, prompt, preset, max_new_tokens, seed, system_prompt="", image=None,
                 temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.0, presence_penalty=1.5,
                 min_visual_tokens=0, max_visual_tokens=1280):
        options = resolve_options(preset, max_new_tokens, seed, temperature, top_p, top_k,
                                  repetition_penalty, presence_penalty)
        images = image_batch_to_list(image, "image") if image is not None else None
        result = ask(model, prompt, options, images, system_prompt, min_visual_tokens, max_visual_tokens,
                     on_step=comfy.token_callback(max_new_tokens))
        info = format_info(result, options, Path(model.path).name)
        return (result.text, result.thinking, info)
