"""Qwen3VL_Generate: prompt (+ images, a video frame batch, an earlier chat) -> text, thinking, info, chat."""

from __future__ import annotations

from pathlib import Path

from ..loaders.tasks import converse
from ..utils.images import image_batch_to_list
from ..utils.messages import CHAT_TYPE
from ..utils.presets import PRESET_NAMES, PRESET_TOOLTIP, resolve_options
from ..utils.text import format_info
from ..utils.video import video_sampling
from . import comfy_services as comfy
from .loader import MODEL_TYPE


class Qwen3VLGenerate:
    DESCRIPTION = ("Asks Qwen3-VL a question, with optional images (every image of the batch goes into the same "
                   "question, in order) and an optional video given as a frame batch with its frame rate. Returns "
                   "the answer, the model's thinking (Thinking models), a debugging report and the conversation; "
                   "connect that chat to another Generate node to ask a follow-up question.")
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
                "model": (MODEL_TYPE, {"tooltip": "From Qwen3-VL Model Loader."}),
                "prompt": ("STRING", {"multiline": True, "default": "Describe this image.",
                                      "tooltip": "Your question or instruction."}),
                "preset": (list(PRESET_NAMES), {"default": "VL", "tooltip": PRESET_TOOLTIP}),
                "max_new_tokens": ("INT", {"default": 4096, "min": 1, "max": 40960,
                                           "tooltip": "Longest answer, in tokens (about 3/4 of a word each). Instruct "
                                                      "models stop by themselves, so room costs nothing. Thinking "
                                                      "models reason first and need it (Qwen suggests up to 40960): "
                                                      "an answer cut off while still thinking gives an empty text, "
                                                      "the reasoning in thinking and a note in info."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                                 "tooltip": "Sampling seed. The same seed and inputs give the same answer; it does "
                                            "not change the random state of the rest of the graph."}),
            },
            "optional": {
                "system_prompt": ("STRING", {"multiline": True, "default": "",
                                             "tooltip": "Optional system instruction (role, style, output format)."}),
                "image": ("IMAGE", {"tooltip": "Optional image batch; every image goes into the question, in order. "
                                               "Grey images become RGB; transparent ones (RGBA) are put on "
                                               "white, as Qwen's own tools do."}),
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
                "chat": (CHAT_TYPE, {"tooltip": "Optional earlier conversation (the chat output of a Qwen3-VL "
                                                "Generate node) to continue: its questions, answers, images and "
                                                "video stay in context and its system prompt is kept "
                                                "(system_prompt here is then not used)."}),
                "video": ("IMAGE", {"tooltip": "Optional video as a frame batch [frames, H, W, C], e.g. from VHS "
                                               "Load Video or core Get Video Components. Frames are sampled evenly "
                                               "over the whole clip."}),
                "video_fps": ("FLOAT", {"default": 24.0, "min": 0.001, "max": 1000.0, "step": 0.001,
                                        "tooltip": "Frame rate of the frames AS GIVEN (after any frame skipping), "
                                                   "in frames per second. Read it from VHS Load Video's video_info "
                                                   "(loaded_fps) or core Get Video Components' fps output, and "
                                                   "connect it here; a wrong value makes every timestamp wrong."}),
                "sample_fps": ("FLOAT", {"default": 2.0, "min": 0.01, "max": 60.0, "step": 0.01,
                                         "tooltip": "How many frames per second of the clip the model sees "
                                                    "(Qwen's default: 2). Limited by max_frames."}),
                "max_frames": ("INT", {"default": 64, "min": 1, "max": 2048,
                                       "tooltip": "Most frames the model sees; a longer clip is sampled evenly "
                                                  "from its first to its last frame (every 2 frames share one "
                                                  "timestamp and one set of visual tokens)."}),
                "max_video_frame_tokens": ("INT", {"default": 256, "min": 4, "max": 4096,
                                                   "tooltip": "Most visual tokens per video frame (1 token = 32x32 "
                                                              "pixels; larger frames are downscaled). Each pair of "
                                                              "frames costs this many tokens: lower it for long "
                                                              "clips or little memory."}),
            },
        }

    def generate(self, model, prompt, preset, max_new_tokens, seed, system_prompt="", image=None,
                 temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.0, presence_penalty=1.5,
                 min_visual_tokens=0, max_visual_tokens=1280, chat=None, video=None, video_fps=24.0,
                 sample_fps=2.0, max_frames=64, max_video_frame_tokens=256):
        options = resolve_options(preset, max_new_tokens, seed, temperature, top_p, top_k,
                                  repetition_penalty, presence_penalty)
        images = image_batch_to_list(image, "image") if image is not None else None
        sampling = (video_sampling(video_fps, sample_fps, max_frames, max_video_frame_tokens)
                    if video is not None else None)
        reply = converse(model, prompt, options, images, system_prompt, chat=chat, video=video,
                         video_sampling=sampling, min_visual_tokens=min_visual_tokens,
                         max_visual_tokens=max_visual_tokens, on_step=comfy.token_callback(max_new_tokens))
        info = format_info(reply.result, options, Path(model.path).name)
        info = "\n".join(reply.notes + (info,))
        return (reply.result.text, reply.result.thinking, info, reply.chat)
