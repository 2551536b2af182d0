"""Qwen3VL_ImageBatch: pictures of different sizes in one batch for one question, none cut unless asked (issue 21:
core ImageBatch is deprecated in ComfyUI 0.33, and its replacement is missing on 0.3.64)."""

from __future__ import annotations

import pytest
import torch

from qwen3vl_pack import NODE_CLASS_MAPPINGS
from qwen3vl_pack.nodes.images import Qwen3VLImageBatch
from qwen3vl_pack.utils.errors import InputError

RED, BLUE, BLACK = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, 0.0, 0.0)


def _solid(h, w, rgb, b=1):
    return torch.tensor(rgb, dtype=torch.float32).expand(b, h, w, 3).clone()


def _halves(h, w):
    """Left half red, right half blue."""
    img = _solid(h, w, BLUE)
    img[:, :, : w // 2] = torch.tensor(RED)
    return img


def _join(*images, fit="pad"):
    more = {f"image_{i}": img for i, img in enumerate(images[2:], start=3)}
    (out,) = Qwen3VLImageBatch().join(images[0], images[1], fit, **more)
    return out


def test_registered_with_tooltips():
    assert NODE_CLASS_MAPPINGS["Qwen3VL_ImageBatch"] is Qwen3VLImageBatch
    spec = Qwen3VLImageBatch.INPUT_TYPES()
    assert list(spec["required"]) == ["image_1", "image_2", "fit"] and list(spec["optional"]) == ["image_3", "image_4"]
    assert all(e[1].get("tooltip") for s in spec.values() for e in s.values())


def test_pad_keeps_every_picture_whole_and_centred_on_white():
    out = _join(_solid(40, 60, RED), _halves(60, 40))  # a portrait picture into a landscape size
    assert out.shape == (2, 40, 60, 3) and out.dtype == torch.float32
    assert torch.equal(out[0], _solid(40, 60, RED)[0])  # the first keeps its pixels exactly
    second = out[1]
    left, right = (60 - 27) // 2, (60 - 27) // 2 + 27  # 60x40 scaled by 2/3 -> 40x27, centred
    assert torch.all(second[:, :left] == 1.0) and torch.all(second[:, right:] == 1.0)  # white bars
    content = second[:, left:right]
    assert torch.allclose(content[:, :12], torch.tensor(RED).expand(40, 12, 3), atol=1e-6)  # both halves there
    assert torch.allclose(content[:, -12:], torch.tensor(BLUE).expand(40, 12, 3), atol=1e-6)


def test_crop_cuts_the_centre_like_core_and_stretch_squeezes():
    wide = _halves(40, 120)  # into 40x60: crop keeps the middle 60 columns, half red, half blue
    crop = _join(_solid(40, 60, BLACK), wide, fit="crop")[1]
    assert torch.allclose(crop[:, :29], torch.tensor(RED).expand(40, 29, 3), atol=1e-6)
    assert torch.allclose(crop[:, 31:], torch.tensor(BLUE).expand(40, 29, 3), atol=1e-6)
    pad = _join(_solid(40, 60, BLACK), wide, fit="pad")[1]  # 40x120 -> 20x60, white above and below
    assert torch.all(pad[:10] == 1.0) and torch.all(pad[30:] == 1.0)
    stretch = _join(_solid(40, 60, BLACK), wide, fit="stretch")[1]
    assert not torch.any(torch.all(stretch == 1.0, dim=-1))  # no white: the whole 40x120 squeezed into 40x60
    assert torch.allclose(stretch[:, :29], torch.tensor(RED).expand(40, 29, 3), atol=1e-6)


def test_batches_keep_input_order_and_an_unconnected_slot_is_skipped():
    colours = [(0.1, 0.1, 0.1), (0.2, 0.2, 0.2), (0.3, 0.3, 0.3)]
    out = Qwen3VLImageBatch().join(_solid(8, 8, colours[0], b=2), _solid(16, 16, colours[1], b=3), "pad",
                                   image_3=None, image_4=_solid(8, 8, colours[2]))[0]
    assert out.shape == (6, 8, 8, 3)
    assert [round(float(v), 3) for v in out[:, 4, 4, 0]] == [0.1, 0.1, 0.2, 0.2, 0.2, 0.3]


def test_rgba_grey_and_uint8_pictures_join_as_rgb():
    rgba = torch.zeros(1, 8, 8, 4)  # fully transparent: white, as Generate shows it
    grey = torch.full((1, 8, 8, 1), 0.5)
    out = _join(rgba, grey)
    assert out.shape == (2, 8, 8, 3)
    assert torch.all(out[0] == 1.0) and torch.allclose(out[1], torch.full((8, 8, 3), 0.5))
    as_uint8 = _join(torch.full((1, 8, 8, 3), 255, dtype=torch.uint8), _solid(8, 8, BLACK))
    assert as_uint8.dtype == torch.float32 and torch.all(as_uint8[0] == 1.0)


@pytest.mark.parametrize(("args", "name"), [
    (("not an image", _solid(8, 8, RED), "pad"), "image_1"),
    ((_solid(8, 8, RED), torch.zeros(0, 8, 8, 3), "pad"), "image_2"),
    ((_solid(8, 8, RED), _solid(8, 8, RED), "zoom"), "fit"),
])
def test_bad_inputs_name_the_input(args, name):
    with pytest.raises(InputError, match=f"^{name}:"):
        Qwen3VLImageBatch().join(*args)


def test_a_bad_optional_picture_is_named_too():
    with pytest.raises(InputError, match="^image_3:"):
        Qwen3VLImageBatch().join(_solid(8, 8, RED), _solid(8, 8, RED), "pad",
                                 image_3=torch.full((1, 4, 4, 3), float("nan")))


def test_two_sizes_reach_one_question_as_two_pictures(dense, monkeypatch):
    """Generate puts both pictures into one prompt: two image spans with the same visual tokens (one size)."""
    from qwen3vl_pack.nodes.generate import Qwen3VLGenerate
    from qwen3vl_pack.tests.spies import spy_prepare_inputs

    calls = spy_prepare_inputs(monkeypatch)
    images = _join(_solid(64, 96, RED), _halves(96, 64))
    text, _thinking, info, _chat = Qwen3VLGenerate().generate(dense, "What differs?", "Greedy", 4, image=images)
    assert calls[0]["image_grid_thw"].shape == (2, 3)
    assert calls[0]["image_grid_thw"][0].tolist() == calls[0]["image_grid_thw"][1].tolist()
    assert info.count("<|image_pad|>×") == 2 and isinstance(text, str)
