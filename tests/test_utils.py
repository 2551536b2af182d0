"""Pure utils/ tests: no transformers model needed."""

from __future__ import annotations

import pytest
import torch

from qwen3vl_pack.utils.errors import InputError
from qwen3vl_pack.utils.images import check_image_batch, image_batch_to_list, to_uint8_chw
from qwen3vl_pack.utils.messages import build_messages, collect_media
from qwen3vl_pack.utils.presets import PRESETS, resolve_options
from qwen3vl_pack.utils.sampling import PresencePenaltyLogitsProcessor, StepCallback
from qwen3vl_pack.utils.text import collapse_pad_runs, split_thinking


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_channels_become_rgb(channels):
    img = torch.rand(2, 5, 7, channels)
    out = check_image_batch(img)
    assert out.shape == (2, 5, 7, 3)
    color = img[..., :3] if channels >= 3 else img[..., :1].expand(-1, -1, -1, 3)
    if channels in (2, 4):  # alpha: composited on white
        alpha = img[..., -1:]
        color = color * alpha + (1 - alpha)
    assert torch.allclose(out, color)


def test_uint8_conversion_matches_pil_rounding():
    img = torch.tensor([[[[0.0, 0.5, 1.0]]]])
    assert to_uint8_chw(img).flatten().tolist() == [0, 128, 255]
    assert to_uint8_chw(img).dtype == torch.uint8


def test_batch_to_list_keeps_order_and_shape():
    img = torch.stack([torch.full((4, 6, 3), i / 10) for i in range(3)])
    out = image_batch_to_list(img)
    assert [t.shape for t in out] == [(3, 4, 6)] * 3
    assert [int(t[0, 0, 0]) for t in out] == [0, 26, 51]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_inf_refused(bad):
    img = torch.rand(1, 4, 4, 3)
    img[0, 1, 1, 0] = bad
    with pytest.raises(InputError, match="^image: contains NaN"):
        check_image_batch(img)


def test_out_of_range_is_clamped_with_warning(caplog):
    img = torch.rand(1, 4, 4, 3) * 3 - 1
    out = check_image_batch(img)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert "clamping" in caplog.text


@pytest.mark.parametrize("shape", [(0, 4, 4, 3), (1, 0, 4, 3), (4, 4), (1, 4, 4, 5)])
def test_bad_shapes_refused(shape):
    with pytest.raises(InputError, match="^image: "):
        check_image_batch(torch.rand(*shape))


def test_presets_follow_spec_table():
    expected = {  # SPEC section 5
        "VL": (0.7, 0.8, 20, 1.0, 1.5, 16384),
        "Text": (1.0, 1.0, 40, 1.0, 2.0, 32768),
        "Thinking": (0.6, 0.95, 20, 1.0, 0.0, 40960),
    }
    for name, (t, p, k, rep, pres, mx) in expected.items():
        o = resolve_options(name, 64, seed=3)
        assert (o.do_sample, o.temperature, o.top_p, o.top_k, o.repetition_penalty, o.presence_penalty) == \
            (True, t, p, k, rep, pres)
        assert PRESETS[name]["max_new_tokens"] == mx
        assert o.max_new_tokens == 64 and o.seed == 3
    g = resolve_options("Greedy", 10)
    assert g.do_sample is False and g.presence_penalty == 0.0 and g.repetition_penalty == 1.0
    assert g.generate_kwargs() == {"max_new_tokens": 10, "do_sample": False, "repetition_penalty": 1.0}


def test_custom_preset_uses_numeric_inputs():
    o = resolve_options("Custom", 5, 1, temperature=0.3, top_p=0.5, top_k=7, repetition_penalty=1.1,
                        presence_penalty=0.4)
    assert (o.temperature, o.top_p, o.top_k, o.repetition_penalty, o.presence_penalty) == (0.3, 0.5, 7, 1.1, 0.4)


@pytest.mark.parametrize("kwargs,name", [
    (dict(preset="Greedy", max_new_tokens=0), "max_new_tokens"),
    (dict(preset="Greedy", max_new_tokens=-5), "max_new_tokens"),
    (dict(preset="Nope", max_new_tokens=5), "preset"),
    (dict(preset="Custom", max_new_tokens=5, temperature=0.0), "temperature"),
    (dict(preset="Custom", max_new_tokens=5, top_p=0.0), "top_p"),
    (dict(preset="Custom", max_new_tokens=5, top_k=-1), "top_k"),
    (dict(preset="Custom", max_new_tokens=5, presence_penalty=-1.0), "presence_penalty"),
])
def test_bad_options_name_the_input(kwargs, name):
    with pytest.raises(InputError) as err:
        resolve_options(**kwargs)
    assert err.value.input_name == name and str(err.value).startswith(name + ":") and err.value.advice


def test_presence_penalty_only_touches_generated_tokens():
    prompt = torch.tensor([[0, 0, 5, 6], [7, 8, 9, 5]])  # row 0 left-padded with token 0
    generated = torch.tensor([[3, 3], [4, 2]])
    ids = torch.cat([prompt, generated], dim=1)
    scores = torch.zeros(2, 12)
    out = PresencePenaltyLogitsProcessor(1.5, prompt_length=4)(ids, scores.clone())
    expected = torch.zeros(2, 12)
    expected[0, 3] = -1.5  # once, although generated twice
    expected[1, 4] = expected[1, 2] = -1.5
    assert torch.equal(out, expected)  # prompt tokens (5-9) and padding (0) untouched
    assert torch.equal(PresencePenaltyLogitsProcessor(1.5, 6)(ids, scores.clone()), scores)


def test_step_callback_reports_new_tokens():
    seen = []
    cb = StepCallback(lambda n: seen.append(n) or n >= 2, prompt_length=3)
    assert cb(torch.zeros(2, 4, dtype=torch.long)).tolist() == [False, False]
    assert cb(torch.zeros(2, 5, dtype=torch.long)).tolist() == [True, True]
    assert seen == [1, 2]


@pytest.mark.parametrize("raw,thinking,text", [
    ("<think>\nreason\n</think>\n\nanswer", "reason", "answer"),
    ("reason only</think>answer", "reason only", "answer"),
    ("plain answer", "", "plain answer"),
    ("<think>cut off while thinking", "cut off while thinking", ""),
    ("<think></think>x", "", "x"),
])
def test_split_thinking(raw, thinking, text):
    assert split_thinking(raw) == (thinking, text)


def test_collapse_pad_runs():
    s = "<|vision_start|>" + "<|image_pad|>" * 80 + "<|vision_end|>a<|video_pad|><|video_pad|>"
    assert collapse_pad_runs(s) == "<|vision_start|><|image_pad|>×80<|vision_end|>a<|video_pad|>×2"


def test_messages_images_in_order_then_text():
    msgs = build_messages("q", ["a", "b", "c"], system_prompt="sys")
    assert msgs[0]["role"] == "system"
    assert [c.get("image") for c in msgs[1]["content"][:3]] == ["a", "b", "c"]
    assert msgs[1]["content"][3] == {"type": "text", "text": "q"}
    assert collect_media(msgs) == (["a", "b", "c"], [])


def test_empty_prompt_without_image_refused():
    with pytest.raises(InputError, match="^prompt: "):
        build_messages("   ", None)
    assert build_messages("", ["img"])[0]["content"] == [{"type": "image", "image": "img"}]
