"""What the small option nodes carry (Sampling, Video Options, Task Options) and how a run node merges it.

A run node (Generate, Grounding, Batch Caption) has a ``preset`` and an optional sampling input: without it the
preset's values are used with seed 0; with it, its values and seed replace the preset. Video options work the
same way: without them, Qwen's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from .boxes3d import DEFAULT_FOV, camera_from_fov
from .errors import InputError
from .presets import PRESETS, THINKING_MODES, THINKING_TOOLTIP, GenerationOptions, resolve_options
from .task_prompts import DEFAULT_STYLE, LANGUAGES, PROMPT_STYLES
from .video import VideoSampling, video_sampling

SAMPLING_TYPE = "QWEN3VL_SAMPLING"
VIDEO_OPTIONS_TYPE = "QWEN3VL_VIDEO_OPTIONS"

GENERATE_PRESETS = ("VL", "Text", "Thinking", "Greedy", "Qwen3.5 Thinking")
RUN_PRESET_TOOLTIP = (
    "Sampling settings published by Qwen. VL: Instruct models on images/video (temperature 0.7, top_p 0.8, top_k 20, "
    "presence penalty 1.5). Text: Instruct models on text only (1.0, 1.0, 40, presence 2.0). Thinking: Thinking "
    "models (0.6, 0.95, 20, presence 0). Greedy: no sampling, the same input gives the same output. Qwen3.5 Thinking: "
    "Qwen3.5 with thinking on (1.0, 0.95, 20, presence 1.5); with thinking off Qwen advises VL. Sampled presets "
    "use seed 0; a connected Qwen3-VL Sampling node replaces the preset with its own values and seed."
)
SAMPLING_INPUT_TOOLTIP = (
    "Optional, from Qwen3-VL Sampling: your own temperature, top_p, top_k, penalties and seed. When connected they "
    "replace the preset (one Sampling node can feed several nodes)."
)
VIDEO_OPTIONS_INPUT_TOOLTIP = (
    "Optional, from Qwen3-VL Video Options: how many frames of the video the model sees and how many tokens each "
    "frame costs. Without it: 2 frames per second, at most 64 frames, 256 tokens per frame."
)


def thinking_input(default: str) -> tuple:
    """The ``thinking`` widget (auto/on/off), the LAST optional input of Generate, Grounding, Batch Caption, Task."""
    return (list(THINKING_MODES), {"default": default, "tooltip": THINKING_TOOLTIP})


@dataclass(frozen=True)
class SamplingSettings:
    """Custom sampling values and seed, already checked (see :func:`check_sampling`)."""

    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    repetition_penalty: float = 1.0
    presence_penalty: float = 1.5
    seed: int = 0


def check_sampling(temperature: float = 0.7, top_p: float = 0.8, top_k: int = 20, repetition_penalty: float = 1.0,
                   presence_penalty: float = 1.5, seed: int = 0) -> SamplingSettings:
    """Check the Sampling node's inputs (errors name the input to fix)."""
    o = resolve_options("Custom", 1, seed, temperature, top_p, top_k, repetition_penalty, presence_penalty)
    return SamplingSettings(o.temperature, o.top_p, o.top_k, o.repetition_penalty, o.presence_penalty, o.seed)


def run_options(preset: str, max_new_tokens: int, sampling: SamplingSettings | None = None,
                thinking: str = "auto") -> GenerationOptions:
    """A run node's preset, max_new_tokens and thinking switch, with a connected Sampling node's values and seed
    taking over the preset."""
    if sampling is None:
        if preset not in PRESETS:
            raise InputError("preset", f"unknown preset {preset!r}.", f"Choose one of {', '.join(PRESETS)}.")
        return resolve_options(preset, max_new_tokens, 0, thinking=thinking)
    if not isinstance(sampling, SamplingSettings):
        raise InputError("sampling", f"is not a Qwen3-VL sampling setting (got {type(sampling).__name__}).",
                         "Connect the output of a Qwen3-VL Sampling node.")
    return resolve_options("Custom", max_new_tokens, sampling.seed, sampling.temperature, sampling.top_p,
                           sampling.top_k, sampling.repetition_penalty, sampling.presence_penalty, thinking)


@dataclass(frozen=True)
class VideoOptions:
    """How a video frame batch is sampled for the model, already checked (see :func:`check_video_options`)."""

    sample_fps: float = 2.0
    max_frames: int = 64
    max_frame_tokens: int = 256


def check_video_options(sample_fps: float = 2.0, max_frames: int = 64,
                        max_video_frame_tokens: int = 256) -> VideoOptions:
    """Check the Video Options node's inputs (errors name the input to fix)."""
    checked = video_sampling(1.0, sample_fps, max_frames, max_video_frame_tokens)
    return VideoOptions(checked.sample_fps, checked.max_frames, checked.max_frame_tokens)


def video_settings(video_fps: float, options: VideoOptions | None = None) -> VideoSampling:
    """The frame rate from Generate plus the (default or connected) video options -> a checked sampling."""
    if options is None:
        options = VideoOptions()
    elif not isinstance(options, VideoOptions):
        raise InputError("video_options", f"is not a Qwen3-VL video option (got {type(options).__name__}).",
                         "Connect the output of a Qwen3-VL Video Options node.")
    return video_sampling(video_fps, options.sample_fps, options.max_frames, options.max_frame_tokens)


TASK_OPTIONS_TYPE = "QWEN3VL_TASK_OPTIONS"
TASK_OPTIONS_INPUT_TOOLTIP = (
    "Optional, from Qwen3-VL Task Options: the language hint (ocr, text spotting), the prompt style (image prompt) "
    "and the camera's field of view (3d boxes). Without it: no language hint, Flux medium, 60 degrees."
)


@dataclass(frozen=True)
class TaskOptions:
    """The Task inputs only some tasks read, already checked (see :func:`check_task_options`)."""

    language: str = "auto"
    style: str = DEFAULT_STYLE
    fov: float = DEFAULT_FOV


def check_task_options(language: str = "auto", style: str = DEFAULT_STYLE, fov: float = DEFAULT_FOV) -> TaskOptions:
    """Check the Task Options node's inputs (errors name the input to fix)."""
    if language not in LANGUAGES:
        raise InputError("language", f"unknown language {language!r}.", "Pick one from the list (auto = no hint).")
    if style not in PROMPT_STYLES:
        raise InputError("style", f"unknown style {style!r}.", "Pick one from the list, e.g. 'Flux medium'.")
    camera_from_fov(1, 1, fov)  # refuses a fov outside (0, 180) naming fov
    return TaskOptions(language, style, float(fov))


def task_settings(options: TaskOptions | None = None) -> TaskOptions:
    """A connected Task Options value, or the defaults."""
    if options is None:
        return TaskOptions()
    if not isinstance(options, TaskOptions):
        raise InputError("task_options", f"is not a Qwen3-VL task option (got {type(options).__name__}).",
                         "Connect the output of a Qwen3-VL Task Options node.")
    return options
