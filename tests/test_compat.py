"""Differences between transformers versions are found by behaviour (loaders/compat.py), never by version number.

These run on every CI leg (4.57.x and the newest 5.x): whatever the installed transformers does, the pack's pixel
budget must really bound the visual tokens of an image.
"""

from __future__ import annotations

import pytest
from PIL import Image

from qwen3vl_pack.loaders.compat import nested_size_honoured, pixel_budget_kwargs
from qwen3vl_pack.loaders.engine import prepare_inputs
from qwen3vl_pack.utils.messages import build_messages

UNIT = 32  # pixels per visual token side: patch 16 x spatial merge 2


def _visual_tokens(processor, min_pixels, max_pixels, side=256):
    conversation = build_messages("Describe.", [Image.new("RGB", (side, side), (120, 30, 200))])
    inputs, _ = prepare_inputs(processor, [conversation], min_pixels, max_pixels)
    t, h, w = (int(v) for v in inputs["image_grid_thw"][0])
    return t * h * w // 4


@pytest.mark.parametrize("tokens", [4, 16, 36])
def test_the_pixel_budget_bounds_the_visual_tokens(dense, tokens):
    pixels = tokens * UNIT * UNIT
    assert _visual_tokens(dense.processor, pixels, pixels) == tokens


def test_the_chosen_form_is_the_one_the_processor_honours(dense):
    image_processor = dense.processor.image_processor
    kwargs = pixel_budget_kwargs(dense.processor, 4 * UNIT * UNIT, 4 * UNIT * UNIT)["images_kwargs"]
    assert set(kwargs) == ({"size"} if nested_size_honoured(image_processor) else {"min_pixels", "max_pixels"})
    assert nested_size_honoured(image_processor) is nested_size_honoured(image_processor)  # asked once, kept


def test_no_budget_means_no_kwargs(dense):
    assert pixel_budget_kwargs(dense.processor, None, None) == {}
