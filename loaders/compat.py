"""Differences between transformers versions (4.57.x, 5.x), in one place.

Each difference is found by asking the installed code what it accepts or does, never from a version number:
versions inside one major line change behaviour too (5.25 changed the video prompt, for one).
"""

from __future__ import annotations

import inspect
import weakref

import numpy as np
import torch


def dtype_kwarg(dtype: torch.dtype) -> dict:
    """``from_pretrained(dtype=...)`` (>= 4.56) or ``torch_dtype=...`` (older)."""
    from transformers import PreTrainedModel

    params = inspect.signature(PreTrainedModel.from_pretrained).parameters
    return {"torch_dtype": dtype} if "dtype" not in params and "torch_dtype" in params else {"dtype": dtype}


def pixel_budget_kwargs(processor, min_pixels: int | None, max_pixels: int | None) -> dict:
    """Processor call kwargs that bound the pixels per image.

    ``size={"shortest_edge", "longest_edge"}`` where the image processor honours a per-call ``size`` (5.x),
    ``min_pixels``/``max_pixels`` where it does not (4.57 reads those and ignores a nested size): which one is
    asked of the image processor itself (``nested_size_honoured``), never read from a version number.
    """
    if min_pixels is None and max_pixels is None:
        return {}
    size = dict(getattr(processor.image_processor, "size", None) or {})
    lo = int(min_pixels if min_pixels is not None else size.get("shortest_edge", 56 * 56))
    hi = int(max_pixels if max_pixels is not None else size.get("longest_edge", 16384 * 32 * 32))
    if not nested_size_honoured(processor.image_processor):
        return {"images_kwargs": {"min_pixels": lo, "max_pixels": hi}}
    return {"images_kwargs": {"size": {"shortest_edge": lo, "longest_edge": hi}}}


_SIZE_HONOURED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def nested_size_honoured(image_processor) -> bool:
    """Whether ``image_processor(images, size={"shortest_edge": a, "longest_edge": b})`` bounds the pixels.

    Found by processing one 256x256 probe image under a tight and a loose bound (a few milliseconds, once per
    image processor): if the two grids differ, the per-call ``size`` is honoured.
    """
    try:
        return _SIZE_HONOURED[image_processor]
    except (KeyError, TypeError):
        pass
    unit = int(getattr(image_processor, "patch_size", 16) or 16) * int(getattr(image_processor, "merge_size", 2) or 2)
    probe = [np.zeros((8 * unit, 8 * unit, 3), dtype=np.uint8)]
    grids = []
    for pixels in (4 * unit * unit, 64 * unit * unit):
        out = image_processor(images=probe, size={"shortest_edge": pixels, "longest_edge": pixels},
                              return_tensors="pt")
        grids.append(tuple(int(v) for v in out["image_grid_thw"][0]))
    honoured = grids[0] != grids[1]
    try:
        _SIZE_HONOURED[image_processor] = honoured
    except TypeError:  # not weak-referenceable: ask again next time
        pass
    return honoured
