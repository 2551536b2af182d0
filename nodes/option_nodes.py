"""Small option nodes that plug into the run nodes: Qwen3VL_Sampling and Qwen3VL_VideoOptions.

They keep what only experts change off Generate, Grounding and Batch Caption; without them those nodes use
Qwen's presets and video defaults.
"""

from __future__ import annotations

from ..utils.node_options import SAMPLING_TYPE, VIDEO_OPTIONS_TYPE, check_sampling, check_video_options


class Qwen3VLSampling:
    DESCRIPTION = ("Your own sampling values and seed for Qwen3-VL Generate, Grounding, Batch Caption or Task: "
                   "connect it to their sampling input and it replaces their preset. The defaults are Qwen's VL preset; set "
                   "control after generate to randomize for a different answer every run.")
    CATEGORY = "Qwen3-VL/options"
    FUNCTION = "settings"
    RETURN_TYPES = (SAMPLING_TYPE,)
    RETURN_NAMES = ("sampling",)
    OUTPUT_TOOLTIPS = ("Connect to the sampling input of Qwen3-VL Generate, Grounding, Batch Caption or Task.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "temperature": ("FLOAT", {"default": 0.7, "min": 0.01, "max": 2.0, "step": 0.01,
                                          "tooltip": "Randomness (> 0). Lower is more focused; Qwen uses 0.7 for "
                                                     "vision, 1.0 for text, 0.6 for Thinking models."}),
                "top_p": ("FLOAT", {"default": 0.8, "min": 0.01, "max": 1.0, "step": 0.01,
                                    "tooltip": "Nucleus sampling: sample among the likeliest tokens that together "
                                               "hold this much probability, in (0, 1] (1.0 = no limit)."}),
                "top_k": ("INT", {"default": 20, "min": 0, "max": 1000,
                                  "tooltip": "Sample among the k likeliest tokens (0 = no limit)."}),
                "repetition_penalty": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 3.0, "step": 0.01,
                                                 "tooltip": "> 1 discourages repeating any earlier token, prompt "
                                                            "included (1.0 = off)."}),
                "presence_penalty": ("FLOAT", {"default": 1.5, "min": 0.0, "max": 2.0, "step": 0.05,
                                               "tooltip": "Subtracted once from the score of every token already "
                                                          "generated, never the prompt's (0 = off; Qwen uses 1.5 for "
                                                          "vision, 2.0 for text, 0 for Thinking)."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                                 "tooltip": "Sampling seed: the same seed and inputs give the same answer. It does not "
                                            "change the random state of the rest of the graph. Batch Caption uses "
                                            "it for every batch."}),
            },
        }

    def settings(self, temperature, top_p, top_k, repetition_penalty, presence_penalty, seed):
        return (check_sampling(temperature, top_p, top_k, repetition_penalty, presence_penalty, seed),)


class Qwen3VLVideoOptions:
    DESCRIPTION = ("How Qwen3-VL Generate reads a video: how many frames per second of the clip it sees, at most "
                   "how many frames, and how many visual tokens a frame may cost. Connect it to Generate's "
                   "video_options input; without it Generate uses 2 frames per second, 64 frames, 256 tokens.")
    CATEGORY = "Qwen3-VL/options"
    FUNCTION = "options"
    RETURN_TYPES = (VIDEO_OPTIONS_TYPE,)
    RETURN_NAMES = ("video_options",)
    OUTPUT_TOOLTIPS = ("Connect to the video_options input of Qwen3-VL Generate.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
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

    def options(self, sample_fps, max_frames, max_video_frame_tokens):
        return (check_video_options(sample_fps, max_frames, max_video_frame_tokens),)
