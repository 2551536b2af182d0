"""The one interface every engine implements (STYLE rule 13).

Nodes, the CLI, batch captioning and grounding hand a backend conversations (chat-template messages with
uint8 images / video items), the generation options, a visual-token budget and hooks; they get one
:class:`~..engine.GenerationResult` per conversation, in order. They never ask which backend runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ...utils.errors import InputError
from ...utils.presets import GenerationOptions
from ...utils.video import TOKEN_SIDE
from ..engine import GenerationResult

K = TypeVar("K")


@dataclass(frozen=True)
class VisualBudget:
    """Visual tokens per image (0 = the model's / server's own limit); 1 token = 32x32 pixels."""

    min_visual_tokens: int = 0
    max_visual_tokens: int = 0


TOKEN_PIXELS = TOKEN_SIDE * TOKEN_SIDE  # one visual token covers 32x32 pixels


def check_budget(min_visual_tokens: int = 0, max_visual_tokens: int = 0) -> VisualBudget:
    """Check the visual-token bounds per image (0 = the model's own) and return them as a budget."""
    for name, value in (("min_visual_tokens", min_visual_tokens), ("max_visual_tokens", max_visual_tokens)):
        if value < 0:
            raise InputError(name, f"must be >= 0, got {value}.", "Use 0 for the model's default.")
    if min_visual_tokens and max_visual_tokens and min_visual_tokens > max_visual_tokens:
        raise InputError("min_visual_tokens", f"({min_visual_tokens}) is larger than max_visual_tokens "
                         f"({max_visual_tokens}).", "Lower min_visual_tokens or raise max_visual_tokens.")
    return VisualBudget(int(min_visual_tokens), int(max_visual_tokens))


def pixel_bounds(budget: VisualBudget) -> tuple[int | None, int | None]:
    """A budget as pixel bounds per image for the processor (None = the model's own)."""
    return (budget.min_visual_tokens * TOKEN_PIXELS or None, budget.max_visual_tokens * TOKEN_PIXELS or None)


@dataclass(frozen=True)
class Hooks:
    """What a caller hears while an answer is made. Every hook runs in the caller's thread.

    ``on_step(new_tokens)``: after every decode step / streamed token (tokens of the first unfinished answer);
    it may raise (ComfyUI's Cancel) to stop the run. ``on_text(thinking, answer)``: the first unfinished
    answer so far, at most every ``text_interval`` seconds, and once more when it is complete.
    """

    on_step: Callable[[int], Any] | None = None
    on_text: Callable[[str, str], Any] | None = None
    text_interval: float = 0.1


NO_HOOKS = Hooks()


class Backend(Protocol):
    """An engine: in-process transformers (``local``) or an OpenAI-compatible server (``served``)."""

    #: short name for ``info`` (the model folder or the served model name)
    label: str

    def generate(self, conversations: list[list[dict]], options: GenerationOptions, budget: VisualBudget,
                 hooks: Hooks = NO_HOOKS, video_kwargs: dict | None = None) -> list[GenerationResult]:
        """One answer per conversation, in order."""

    def generate_stream(self, items: Iterable[tuple[K, list[dict]]], options: GenerationOptions,
                        budget: VisualBudget, batch_size: int, hooks: Hooks = NO_HOOKS,
                        before_batch: Callable[[], None] | None = None, ordered: bool = True
                        ) -> Iterator[list[tuple[K, GenerationResult]]]:
        """Answers for a long stream of ``(key, conversation)`` items, in input order, as soon as each group is
        done (a batch of ``batch_size`` in-process; single answers as they arrive from a server). Items are
        pulled lazily. ``before_batch`` runs before each new group / request is started (Cancel).
        ``ordered=False`` lets an engine hand out each answer as soon as it is finished, in any order (the keys
        say which), and the finished ones before it raises (files written as answers arrive)."""

    def video_factor(self) -> int:
        """Pixels per visual-token side of video frames (32 for Qwen3-VL)."""

    def release(self) -> None:
        """After a run: free what the bundle asked not to keep (the in-process model with keep_loaded off)."""
