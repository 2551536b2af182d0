"""What the nodes and the CLI ask for: one call each, on a ModelBundle."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..utils.errors import GenerationOOMError, InputError
from ..utils.messages import Chat, build_messages, check_chat, extend_chat
from ..utils.presets import GenerationOptions
from ..utils.video import TOKEN_SIDE, VideoSampling, describe_video, prepare_video
from .cache import ModelBundle, release_after_run, unload
from .engine import GenerationResult, generate

logger = logging.getLogger(__name__)
TOKEN_PIXELS = TOKEN_SIDE * TOKEN_SIDE  # one visual token covers 32x32 pixels


def pixel_budget(min_visual_tokens: int = 0, max_visual_tokens: int = 0) -> tuple[int | None, int | None]:
    """Visual-token bounds per image (0 = the model's own) -> pixel bounds for the processor."""
    for name, value in (("min_visual_tokens", min_visual_tokens), ("max_visual_tokens", max_visual_tokens)):
        if value < 0:
            raise InputError(name, f"must be >= 0, got {value}.", "Use 0 for the model's default.")
    if min_visual_tokens and max_visual_tokens and min_visual_tokens > max_visual_tokens:
        raise InputError("min_visual_tokens", f"({min_visual_tokens}) is larger than max_visual_tokens "
                         f"({max_visual_tokens}).", "Lower min_visual_tokens or raise max_visual_tokens.")
    return (min_visual_tokens * TOKEN_PIXELS or None, max_visual_tokens * TOKEN_PIXELS or None)


# torch >= 2.5 has torch.OutOfMemoryError (CUDA and MPS); older ComfyUI installs only the CUDA one.
OOM_ERRORS = (getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError),)


@contextmanager
def unload_on_oom(bundle: ModelBundle, advice: str, input_name: str = ""):
    """Turn a device out-of-memory error into a clear one, after unloading the model to free memory."""
    failure = None
    try:
        yield
    except OOM_ERRORS as err:
        failure = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
    if failure is not None:  # outside the except block: generate()'s frames (model, inputs) are gone
        unload(bundle.key)  # the next run reloads the model
        head = f"{input_name}: " if input_name else ""
        raise GenerationOOMError(f"{head}out of device memory while generating ({failure}). The model was "
                                 f"unloaded to free memory. {advice}")


def run_conversations(bundle: ModelBundle, conversations: list[list[dict]], options: GenerationOptions,
                      min_visual_tokens: int = 0, max_visual_tokens: int = 0, video_kwargs: dict | None = None,
                      on_step: Callable[[int], bool | None] | None = None) -> list[GenerationResult]:
    """Generate an answer for each conversation in one batch; free the model after if not kept."""
    min_pixels, max_pixels = pixel_budget(min_visual_tokens, max_visual_tokens)
    try:
        with unload_on_oom(bundle, "Lower max_visual_tokens (images), max_frames or max_video_frame_tokens "
                                   "(video) or max_new_tokens; or load with quantization 4-bit; or pick a "
                                   "smaller model."):
            return generate(bundle.model, bundle.processor, conversations, options, min_pixels=min_pixels,
                            max_pixels=max_pixels, video_kwargs=video_kwargs, on_step=on_step)
    finally:
        release_after_run(bundle)


@dataclass(frozen=True)
class Reply:
    """One answer, the conversation it ends, and notes for ``info`` (e.g. which video frames were seen)."""

    result: GenerationResult
    chat: Chat
    notes: tuple[str, ...] = ()


def video_factor(processor) -> int:
    """Pixels per visual-token side for video frames (patch size x spatial merge: 32 for Qwen3-VL)."""
    vp = processor.video_processor
    return int(getattr(vp, "patch_size", 16)) * int(getattr(vp, "merge_size", 2))


def converse(bundle: ModelBundle, prompt: str, options: GenerationOptions, images: list | None = None,
             system_prompt: str = "", chat: Chat | None = None, video: torch.Tensor | None = None,
             video_sampling: VideoSampling | None = None, min_visual_tokens: int = 0, max_visual_tokens: int = 0,
             on_step: Callable[[int], bool | None] | None = None) -> Reply:
    """One user turn (images, then a video frame batch, then text), new or continuing ``chat`` -> the answer.

    ``video`` is a ComfyUI IMAGE frame batch; ``video_sampling`` (required with it) says its frame rate and
    how to sample it. The returned chat holds the whole conversation including this answer; ``chat`` itself
    is left unchanged.
    """
    pixel_budget(min_visual_tokens, max_visual_tokens)  # checked before any model or video work
    if chat is not None:
        check_chat(chat)
    item = None
    if video is not None:
        if video_sampling is None:
            raise InputError("video_fps", "is needed with a video.", "Set the frame rate of the frames.")
        item = prepare_video(video, video_sampling, factor=video_factor(bundle.processor))
    messages = build_messages(prompt, images, system_prompt, video=item, chat=chat)
    result = run_conversations(bundle, [messages], options, min_visual_tokens, max_visual_tokens,
                               on_step=on_step)[0]
    notes = (describe_video(item),) if item is not None else ()
    return Reply(result, extend_chat(messages, result.text), notes)


def ask(bundle: ModelBundle, prompt: str, options: GenerationOptions, images: list | None = None,
        system_prompt: str = "", min_visual_tokens: int = 0, max_visual_tokens: int = 0,
        on_step: Callable[[int], bool | None] | None = None) -> GenerationResult:
    """One question (with any images, in order, in one user turn) -> one answer."""
    return converse(bundle, prompt, options, images, system_prompt, min_visual_tokens=min_visual_tokens,
                    max_visual_tokens=max_visual_tokens, on_step=on_step).result
