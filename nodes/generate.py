"""Qwen3VL_Generate: prompt (+ images, a video frame batch, an earlier chat) -> text, thinking, info, chat."""

from __future__ import annotations

from ..loaders.lora import describe
from ..loaders.tasks import converse
from ..utils.images import image_batch_to_list
from ..utils.messages import CHAT_TYPE
from ..utils.node_options import (
    GENERATE_PRESETS,
    RUN_PRESET_TOOLTIP,
    SAMPLING_INPUT_TOOLTIP,
    SAMPLING_TYPE,
    VIDEO_OPTIONS_INPUT_TOOLTIP,
    VIDEO_OPTIONS_TYPE,
    run_options,
    thinking_input,
    video_settings,
)
from ..utils.text import format_info
from . import comfy_services as comfy
from .loader import MODEL_TYPE


class Qwen3VLGenerate:
    DESCRIPTION = ("Asks Qwen3-VL / Qwen3.5 a question, with optional images (every image of the batch goes into the "
                   "same question, in order) and an optional video given as a frame batch with its frame rate. "
                   "Returns the answer, the model's thinking (Thinking models; Qwen3.5 with thinking on), a "
                   "debugging report and the conversation; connect that chat to another Generate node to ask a follow-up question. The answer appears on "
                   "the node as it is written. Expert settings plug in: Qwen3-VL Sampling, Qwen3-VL Video Options.")
    CATEGORY = "Qwen3-VL"
    FUNCTION = "generate"
    RETURN_TYPES = ("STRING", "STRING", "STRING", CHAT_TYPE)
    RETURN_NAMES = ("text", "thinking", "info", "chat")
    OUTPUT_TOOLTIPS = (
        "The answer, without any <think>...</think> part.",
        "The reasoning inside <think>...</think> (Thinking models); empty otherwise.",
        "For debugging: the rendered prompt (vision tokens collapsed, e.g. <|image_pad|>×80), token counts, "
        "visual tokens per image, time and tokens per second. With a video: the frames used and their "
        "<t seconds> timestamps; with a chat: the earlier turns.",
        "The whole conversation including this answer (images and video included). Connect it to the chat input "
        "of another Qwen3-VL Generate node to ask a follow-up question.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL_TYPE, {"tooltip": "From Qwen3-VL Model Loader or Qwen3-VL Server Model."}),
                "prompt": ("STRING", {"multiline": True, "default": "Describe this image.",
                                      "tooltip": "Your question or instruction."}),
                "preset": (list(GENERATE_PRESETS), {"default": "VL", "tooltip": RUN_PRESET_TOOLTIP}),
                "max_new_tokens": ("INT", {"default": 4096, "min": 1, "max": 40960,
                                           "tooltip": "Longest answer, in tokens (about 3/4 of a word each). Instruct "
                                                      "models stop by themselves, so room costs nothing. Thinking "
                                                      "models reason first and need it (Qwen suggests up to 40960): "
                                                      "an answer cut off while still thinking gives an empty text, "
                                                      "the reasoning in thinking and a note in info."}),
            },
            "optional": {
                "system_prompt": ("STRING", {"multiline": True, "default": "",
                                             "tooltip": "Optional system instruction (role, style, output format)."}),
                "image": ("IMAGE", {"tooltip": "Optional image batch; every image goes into the question, in order. "
                                               "Grey images become RGB; transparent ones (RGBA) are put on "
                                               "white, as Qwen's own tools do."}),
                "min_visual_tokens": ("INT", {"default": 0, "min": 0, "max": 16384,
                                              "tooltip": "Fewest visual tokens per image (1 token = 32x32 pixels); "
                                                         "small images are upscaled to reach it. 0 = model default."}),
                "max_visual_tokens": ("INT", {"default": 1280, "min": 0, "max": 16384,
                                              "tooltip": "Most visual tokens per image (1 token = 32x32 pixels); "
                                                         "large images are downscaled. Qwen's examples use 1280. "
                                                         "0 = model default."}),
                "chat": (CHAT_TYPE, {"tooltip": "Optional earlier conversation (the chat output of a Qwen3-VL "
                                                "Generate node) to continue: its questions, answers, images and "
                                                "video stay in context and its system prompt is kept "
                                                "(system_prompt here is then not used)."}),
                "video": ("IMAGE", {"tooltip": "Optional video as a frame batch [frames, H, W, C], e.g. from VHS "
                                               "Load Video or core Get Video Components. Frames are sampled evenly "
                                               "over the whole clip (see Qwen3-VL Video Options)."}),
                "video_fps": ("FLOAT", {"default": 24.0, "min": 0.001, "max": 1000.0, "step": 0.001,
                                        "tooltip": "Frame rate of the frames AS GIVEN (after any frame skipping), "
                                                   "in frames per second. Read it from VHS Load Video's video_info "
                                                   "(loaded_fps) or core Get Video Components' fps output, and "
                                                   "connect it here; a wrong value makes every timestamp wrong."}),
                "sampling": (SAMPLING_TYPE, {"tooltip": SAMPLING_INPUT_TOOLTIP}),
                "video_options": (VIDEO_OPTIONS_TYPE, {"tooltip": VIDEO_OPTIONS_INPUT_TOOLTIP}),
                "thinking": thinking_input("auto"),
            },
        }

    def generate(self, model, prompt, preset, max_new_tokens, system_prompt="", image=None, min_visual_tokens=0,
                 max_visual_tokens=1280, chat=None, video=None, video_fps=24.0, sampling=None, video_options=None,
                 thinking="auto"):
        options = run_options(preset, max_new_tokens, sampling, thinking)
        images = image_batch_to_list(image, "image") if image is not None else None
        frames = video_settings(video_fps, video_options) if video is not None else None
        feedback = comfy.NodeFeedback(max_new_tokens)
        reply = converse(model, prompt, options, images, system_prompt, chat=chat, video=video,
                         video_sampling=frames, min_visual_tokens=min_visual_tokens,
                         max_visual_tokens=max_visual_tokens, on_step=feedback.on_step, on_text=feedback.on_text)
        feedback.finish()
        info = format_info(reply.result, options, describe(model))
        info = "\n".join(reply.notes + (info,))
        return (reply.result.text, reply.result.thinking, info, reply.chat)
