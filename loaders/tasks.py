"""What the nodes and the CLI ask for: one call each, on whatever a loader node produced (local or served)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..utils.errors import InputError
from ..utils.messages import Chat, build_messages, check_chat, extend_chat
from ..utils.presets import GenerationOptions
from ..utils.video import VideoSampling, describe_video, prepare_video
from .backends import Hooks, backend_for, check_budget, pixel_bounds
from .backends.base import TOKEN_PIXELS
from .backends.local import OOM_ERRORS, unload_on_oom
from .engine import GenerationResult

logger = logging.getLogger(__name__)
__all__ = ["OOM_ERRORS", "TOKEN_PIXELS", "Reply", "ask", "converse", "pixel_budget", "run_conversations",
           "unload_on_oom"]


def pixel_budget(min_visual_tokens: int = 0, max_visual_tokens: int = 0) -> tuple[int | None, int | None]:
    """Visual-token bounds per image (0 = the model's own) -> pixel bounds for the processor (checked)."""
    return pixel_bounds(check_budget(min_visual_tokens, max_visual_tokens))


def run_conversations(bundle, conversations: list[list[dict]], options: GenerationOptions,
                      min_visual_tokens: int = 0, max_visual_tokens: int = 0, video_kwargs: dict | None = None,
                      on_step: Callable[[int], bool | None] | None = None,
                      on_text: Callable[[str, str], object] | None = None) -> list[GenerationResult]:
    """Generate an answer for each conversation (one batch in-process; concurrent requests on a server).

    ``bundle`` is a local or a served model; the model is freed after the run if its loader said so.
    """
    budget = check_budget(min_visual_tokens, max_visual_tokens)
    backend = backend_for(bundle)
    try:
        return backend.generate(conversations, options, budget, Hooks(on_step=on_step, on_text=on_text),
                                video_kwargs=video_kwargs)
    finally:
        backend.release()


@dataclass(frozen=True)
class Reply:
    """One answer, the conversation it ends, and notes for ``info`` (e.g. which video frames were seen)."""

    result: GenerationResult
    chat: Chat
    notes: tuple[str, ...] = ()


def converse(bundle, prompt: str, options: GenerationOptions, images: list | None = None,
             system_prompt: str = "", chat: Chat | None = None, video: torch.Tensor | None = None,
             video_sampling: VideoSampling | None = None, min_visual_tokens: int = 0, max_visual_tokens: int = 0,
             on_step: Callable[[int], bool | None] | None = None,
             on_text: Callable[[str, str], object] | None = None) -> Reply:
    """One user turn (images, then a video frame batch, then text), new or continuing ``chat`` -> the answer.

    ``video`` is a ComfyUI IMAGE frame batch; ``video_sampling`` (required with it) says its frame rate and
    how to sample it. The returned chat holds the whole conversation including this answer; ``chat`` itself
    is left unchanged.
    """
    check_budget(min_visual_tokens, max_visual_tokens)  # checked before any model or video work
    if chat is not None:
        check_chat(chat)
    item = None
    if video is not None:
        if video_sampling is None:
            raise InputError("video_fps", "is needed with a video.", "Set the frame rate of the frames.")
        item = prepare_video(video, video_sampling, factor=backend_for(bundle).video_factor())
    messages = build_messages(prompt, images, system_prompt, video=item, chat=chat)
    result = run_conversations(bundle, [messages], options, min_visual_tokens, max_visual_tokens,
                               on_step=on_step, on_text=on_text)[0]
    notes = (describe_video(item),) if item is not None else ()
    return Reply(result, extend_chat(messages, result.text), notes)


def ask(bundle, prompt: str, options: GenerationOptions, images: list | None = None,
        system_prompt: str = "", min_visual_tokens: int = 0, max_visual_tokens: int = 0,
        on_step: Callable[[int], bool | None] | None = None,
        on_text: Callable[[str, str], object] | None = None) -> GenerationResult:
    """One question (with any images, in order, in one user turn) -> one answer."""
    return converse(bundle, prompt, options, images, system_prompt, min_visual_tokens=min_visual_tokens,
                    max_visual_tokens=max_visual_tokens, on_step=on_step, on_text=on_text).result
