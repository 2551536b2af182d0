"""Differences between transformers 4.57.x and 5.x, in one place."""

from __future__ import annotations

import inspect

import torch


def dtype_kwarg(dtype: torch.dtype) -> dict:
    """``from_pretrained(dtype=...)`` (>= 4.56) or ``torch_dtype=...`` (older)."""
    from transformers import PreTrainedModel

    params = inspect.signature(PreTrainedModel.from_pretrained).parameters
    return {"torch_dtype": dtype} if "dtype" not in params and "torch_dtype" in params else {"dtype": dtype}


def pixel_budget_kwargs(processor, min_pixels: int | None, max_pixels: int | None) -> dict:
    """Processor call kwargs that bound the pixels per image (``size`` shortest/longest edge)."""
    if min_pixels is None and max_pixels is None:
        return {}
    size = dict(getattr(processor.image_processor, "size", None) or {})
    lo = int(min_pixels if min_pixels is not None else size.get("shortest_edge", 56 * 56))
    hi = int(max_pixels if max_pixels is not None else size.get("longest_edge", 16384 * 32 * 32))
    if transformers_major() < 5:  # 4.57 reads min_pixels/max_pixels and ignores a nested size
        return {"images_kwargs": {"min_pixels": lo, "max_pixels": hi}}
    return {"images_kwargs": {"size": {"shortest_edge": lo, "longest_edge": hi}}}


def transformers_major() -> int:
    import transformers

    return int(transformers.__version__.split(".")[0])
