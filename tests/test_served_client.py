"""The served backend's own logic, against a misbehaving local server: mapping, streaming, retries, faults.

The success path runs against a real vLLM in tests/test_served_vllm.py.
"""

from __future__ import annotations

import base64
import io
import logging
import time

import pytest
import torch
from PIL import Image

from qwen3vl_pack.loaders.backends import served
from qwen3vl_pack.loaders.backends.served import connect, request_payload
from qwen3vl_pack.loaders.batch import caption_images, make_job
from qwen3vl_pack.loaders.tasks import ask, run_conversations
from qwen3vl_pack.utils.errors import InputError
from qwen3vl_pack.utils.messages import build_messages
from qwen3vl_pack.utils.openai_messages import smart_size, to_openai
from qwen3vl_pack.utils.presets import resolve_options

from .fake_openai_server import FakeServer

pytestmark = pytest.mark.usefixtures("fast_served")  # quick retries, no remembered answers


@pytest.fixture()
def fake():
    with FakeServer() as server:
        yield server


def _greedy(n=8):
    return resolve_options("Greedy", n, 0)


def _chw(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)


def _decode_png(url: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


# --- mapping --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("preset, expected", [
    ("Greedy", {"temperature": 0.0, "top_p": 1.0, "presence_penalty": 0.0}),
    ("VL", {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "presence_penalty": 1.5}),
    ("Text", {"temperature": 1.0, "top_p": 1.0, "top_k": 40, "presence_penalty": 2.0}),
    ("Thinking", {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "presence_penalty": 0.0}),
])
def test_presets_map_to_openai_fields(fake, preset, expected):
    bundle = connect(fake.url)
    payload, _ = request_payload(bundle, build_messages("hi 0"), resolve_options(preset, 77, 5), served.VisualBudget())
    for key, value in expected.items():
        assert payload[key] == value, key
    assert payload["max_tokens"] == 77 and payload["seed"] == 5 and payload["model"] == "qwen3vl-fake"
    assert "repetition_penalty" not in payload  # 1.0 = off, not sent
    if preset == "Greedy":
        assert "top_k" not in payload
    custom = resolve_options("Custom", 9, 3, 0.5, 0.9, 0, 1.1, 0.2)
    payload, _ = request_payload(bundle, build_messages("hi"), custom, served.VisualBudget())
    assert payload["repetition_penalty"] == 1.1 and "top_k" not in payload and payload["temperature"] == 0.5


@pytest.mark.parametrize("h, w, max_tokens", [(1000, 500, 256), (333, 777, 64), (40, 40, 1280), (2000, 3000, 1280)])
def test_images_are_resized_to_the_local_processors_size(dense, h, w, max_tokens):
    """The image that crosses the wire has the grid the in-process processor makes of the same budget."""
    from qwen3vl_pack.loaders.engine import prepare_inputs

    image = _chw(h, w)
    conv = build_messages("Describe.", [image])
    inputs, _ = prepare_inputs(dense.processor, [conv], 4 * 1024, max_tokens * 1024)
    _, gh, gw = inputs["image_grid_thw"][0].tolist()
    req = to_openai(conv, 4 * 1024, max_tokens * 1024)
    sent = _decode_png(req.messages[0]["content"][0]["image_url"]["url"])
    assert (sent.height, sent.width) == (gh * 16, gw * 16)
    assert req.visual_tokens == [gh * gw // 4]
    assert smart_size(h, w, 4 * 1024, max_tokens * 1024) == (gh * 16, gw * 16)


def test_conversation_shapes(fake):
    images = [_chw(64, 96, i) for i in range(2)]
    req = to_openai(build_messages("What differs?", images, system_prompt="Be brief."), None, 256 * 1024)
    assert [m["role"] for m in req.messages] == ["system", "user"]
    assert req.messages[0]["content"] == "Be brief."
    kinds = [p["type"] for p in req.messages[1]["content"]]
    assert kinds == ["image_url", "image_url", "text"]


# --- streaming, hooks, thinking -------------------------------------------------------------------------------

def test_stream_counts_tokens_and_calls_hooks(fake):
    steps, texts = [], []
    result = ask(connect(fake.url), "hi 0", _greedy(), on_step=steps.append,
                 on_text=lambda thinking, answer: texts.append((thinking, answer)))
    assert result.text == "w0_0 w0_1 w0_2 w0_3 w0_4"
    assert result.new_tokens == 5 and result.prompt_tokens == 42
    assert [s for s in steps if s] == [1, 2, 3, 4, 5]
    assert texts[-1] == ("", result.text)


def test_reasoning_field_becomes_thinking(fake):
    fake.mode = "reasoning"
    result = ask(connect(fake.url), "hi 0", _greedy())
    assert result.thinking == "Let me look." and result.text.startswith("w0_0")


def test_thinking_prompt_cut_off_is_all_thinking(fake):
    fake.mode = "think_open"
    bundle = connect(fake.url)
    bundle = served.ServerBundle(bundle.base_url, bundle.model, opens_think=True)
    result = ask(bundle, "hi 0", _greedy())
    assert result.text == "" and result.thinking.startswith("thought0") and result.answer_cut_off
    job = make_job("custom", _greedy(), "caption", batch_size=1)
    from qwen3vl_pack.utils.captions import CutOffCaption

    captions = caption_images(bundle, [_chw(64, 64)], job)  # a draft is never a caption: marked, not written
    assert len(captions) == 1 and isinstance(captions[0], CutOffCaption) and captions[0] == ""


def test_requests_in_flight_are_bounded_and_answers_keep_input_order(fake):
    fake.mode = "slow_first"
    bundle = connect(fake.url, max_concurrency=2)
    convs = [build_messages(f"caption {i}") for i in range(6)]
    results = run_conversations(bundle, convs, _greedy())
    assert [r.text.split("_")[0] for r in results] == [f"w{i}" for i in range(6)]
    assert fake.max_in_flight == 2


# --- faults ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, needle", [
    ("127.0.0.1:8000/v1", "no http:// or https:// scheme"),
    ("", "is empty"),
    ("http://", "no http:// or https:// scheme"),
])
def test_bad_base_url(url, needle):
    with pytest.raises(InputError, match=needle) as err:
        connect(url)
    assert str(err.value).startswith("base_url:")


def test_connection_refused_names_base_url_and_is_bounded():
    with FakeServer() as server:
        url = server.url
    start = time.perf_counter()
    with pytest.raises(InputError, match="cannot reach the server") as err:
        connect(url)
    assert str(err.value).startswith("base_url:") and time.perf_counter() - start < 5


def test_non_openai_page(fake):
    fake.mode = "html"
    with pytest.raises(InputError, match="did not answer with an OpenAI model list") as err:
        connect(fake.url)
    assert str(err.value).startswith("base_url:")


def test_model_not_served_lists_what_is(fake):
    with pytest.raises(InputError, match="qwen3vl-fake") as err:
        connect(fake.url, "Qwen3-VL-8B")
    assert str(err.value).startswith("model:")


def test_max_concurrency_zero_and_bad_timeout(fake):
    with pytest.raises(InputError, match="^max_concurrency:"):
        connect(fake.url, max_concurrency=0)
    with pytest.raises(InputError, match="^timeout_s:"):
        connect(fake.url, timeout_s=0)


def test_api_key_from_the_named_variable_only(fake, monkeypatch, caplog):
    fake.api_key = "s3cret-key"
    monkeypatch.delenv("QWEN3VL_API_KEY_TEST", raising=False)
    with pytest.raises(InputError, match="QWEN3VL_API_KEY_TEST is not set") as err:
        connect(fake.url, api_key_env="QWEN3VL_API_KEY_TEST")
    assert str(err.value).startswith("api_key_env:")
    monkeypatch.setenv("QWEN3VL_API_KEY_TEST", "s3cret-key")
    with caplog.at_level(logging.DEBUG):
        bundle = connect(fake.url, api_key_env="QWEN3VL_API_KEY_TEST")
        result = ask(bundle, "hi 0", _greedy())
    assert result.new_tokens == 5
    assert "s3cret" not in repr(bundle) and "s3cret" not in caplog.text


def test_busy_server_is_retried_then_answers(fake):
    fake.mode, fake.status, fake.failures = "status_then_ok", 429, 2
    result = ask(connect(fake.url), "hi 0", _greedy())
    assert result.new_tokens == 5 and fake.chat_requests == 3


def test_busy_server_gives_up_after_bounded_retries(fake):
    fake.mode, fake.status = "status", 503
    with pytest.raises(InputError, match="busy or unavailable") as err:
        ask(connect(fake.url), "hi 0", _greedy())
    assert str(err.value).startswith("base_url:") and fake.chat_requests == 4  # 1 + 3 retries


@pytest.mark.parametrize("message, name", [
    ("This model's maximum context length is 2048 tokens. However, you requested 4100 tokens.", "max_new_tokens"),
    ("At most 4 image(s) may be provided in one prompt.", "image"),
    ("Per-request media_io_kwargs are disabled by default", "video"),
    ("something else went wrong", "base_url"),
])
def test_refusals_name_the_input(fake, message, name):
    fake.mode, fake.status, fake.message = "status", 400, message
    with pytest.raises(InputError) as err:
        ask(connect(fake.url), "hi 0", _greedy())
    assert str(err.value).startswith(name + ":") and message[:30] in str(err.value)


def test_server_dying_mid_stream_then_next_run_works(fake):
    fake.mode = "die_after"
    bundle = connect(fake.url)
    with pytest.raises(InputError, match="closed the answer stream") as err:
        ask(bundle, "hi 0", _greedy())
    assert str(err.value).startswith("base_url:")
    fake.mode = "ok"
    assert ask(bundle, "hi 0", _greedy()).new_tokens == 5


def test_malformed_stream_json(fake):
    fake.mode = "bad_json"
    with pytest.raises(InputError, match="not JSON"):
        ask(connect(fake.url), "hi 0", _greedy())


def test_stalled_server_times_out(fake):
    fake.mode = "stall"
    bundle = connect(fake.url, timeout_s=1.0)
    start = time.perf_counter()
    with pytest.raises(InputError, match="sent nothing usable for 1 s") as err:
        ask(bundle, "hi 0", _greedy())
    assert str(err.value).startswith("timeout_s:") and time.perf_counter() - start < 4


class Interrupted(Exception):
    pass


def test_cancel_closes_the_stream_and_the_next_run_works(fake):
    fake.mode, fake.tokens = "cancel_watch", 60
    bundle = connect(fake.url)

    def on_step(n):
        if n >= 3:
            raise Interrupted

    start = time.perf_counter()
    with pytest.raises(Interrupted):
        ask(bundle, "hi 0", _greedy(60), on_step=on_step)
    assert time.perf_counter() - start < 2  # 60 tokens take 3 s: the stream was closed early
    deadline = time.monotonic() + 3
    while fake.disconnects < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake.disconnects == 1  # the server saw the client go away (vLLM aborts the request then)
    fake.mode, fake.tokens = "ok", 5
    assert ask(bundle, "hi 0", _greedy()).new_tokens == 5


def test_batch_captions_done_before_a_crash_are_not_asked_again(fake):
    fake.mode, fake.failures = "die_at", 4  # the 4th request dies mid-answer
    bundle = connect(fake.url, max_concurrency=1)
    images = [_chw(64, 64, i) for i in range(6)]
    job = make_job("custom", _greedy(), "caption", batch_size=1)
    with pytest.raises(InputError, match="closed the answer stream"):
        caption_images(bundle, images, job)
    assert fake.chat_requests == 4
    fake.mode = "ok"
    captions = caption_images(bundle, images, job)
    assert len(captions) == 6
    assert fake.chat_requests == 4 + 3  # only the missing ones: the 4th, 5th and 6th
