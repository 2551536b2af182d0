"""The in-process engine: transformers ``generate`` on a model from the MODEL_CACHE."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

import torch

from ...utils.errors import GenerationOOMError
from ...utils.presets import GenerationOptions
from ..cache import ModelBundle, release_after_run, unload
from ..engine import GenerationResult, generate
from .base import NO_HOOKS, Hooks, VisualBudget, pixel_bounds

logger = logging.getLogger(__name__)

# torch >= 2.5 has torch.OutOfMemoryError (CUDA and MPS); older ComfyUI installs only the CUDA one.
OOM_ERRORS = (getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError),)
OOM_ADVICE = ("Lower max_visual_tokens (images), max_frames or max_video_frame_tokens (video) or max_new_tokens; "
              "or load with quantization 4-bit; or pick a smaller model; or serve the model (Qwen3-VL Server Model).")


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


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


class LocalBackend:
    """transformers in ComfyUI's own process; several conversations go in one left-padded batch."""

    def __init__(self, bundle: ModelBundle):
        self.bundle = bundle
        self.label = Path(bundle.path).name

    def generate(self, conversations: list[list[dict]], options: GenerationOptions, budget: VisualBudget,
                 hooks: Hooks = NO_HOOKS, video_kwargs: dict | None = None,
                 oom_advice: str = OOM_ADVICE, oom_input: str = "") -> list[GenerationResult]:
        min_pixels, max_pixels = pixel_bounds(budget)
        with unload_on_oom(self.bundle, oom_advice, oom_input):
            return generate(self.bundle.model, self.bundle.processor, conversations, options, min_pixels=min_pixels,
                            max_pixels=max_pixels, video_kwargs=video_kwargs, on_step=hooks.on_step,
                            on_text=hooks.on_text, text_interval=hooks.text_interval)

    def generate_stream(self, items: Iterable[tuple[Any, list[dict]]], options: GenerationOptions,
                        budget: VisualBudget, batch_size: int, hooks: Hooks = NO_HOOKS,
                        before_batch: Callable[[], None] | None = None,
                        ordered: bool = True) -> Iterator[list[tuple[Any, GenerationResult]]]:
        for chunk in _chunks(items, batch_size):  # batches finish in order: ``ordered`` changes nothing here
            if before_batch is not None:
                before_batch()
            advice = (f"{len(chunk)} images were captioned in one call: lower batch_size (or max_visual_tokens / "
                      "max_new_tokens), or load the model with quantization 4-bit.")
            results = self.generate([conv for _, conv in chunk], options, budget, hooks,
                                    oom_advice=advice, oom_input="batch_size")
            yield [(key, r) for (key, _), r in zip(chunk, results, strict=True)]

    def video_factor(self) -> int:
        vp = self.bundle.processor.video_processor
        return int(getattr(vp, "patch_size", 16)) * int(getattr(vp, "merge_size", 2))

    def release(self) -> None:
        release_after_run(self.bundle)
