"""The thinking switch on the served path, against the local fake OpenAI server: chat_template_kwargs per request
(vLLM / SGLang / llama-server pass it to the chat template), reasoning_content split as before, info notes."""

from __future__ import annotations

import pytest
import torch

from qwen3vl_pack.loaders.backends.base import VisualBudget
from qwen3vl_pack.loaders.backends.served import connect, request_payload
from qwen3vl_pack.loaders.batch import caption_images, make_job
from qwen3vl_pack.loaders.tasks import ask
from qwen3vl_pack.utils.messages import build_messages
from qwen3vl_pack.utils.presets import resolve_options
from qwen3vl_pack.utils.text import format_info

from .fake_openai_server import FakeServer

pytestmark = pytest.mark.usefixtures("fast_served")  # quick retries, no remembered answers


@pytest.fixture()
def fake():
    with FakeServer() as server:
        yield server


@pytest.mark.parametrize("thinking,expected", [("auto", None), ("on", {"enable_thinking": True}),
                                               ("off", {"enable_thinking": False})])
def test_thinking_maps_to_chat_template_kwargs(fake, thinking, expected):
    bundle = connect(fake.url)
    options = resolve_options("Greedy", 8, thinking=thinking)
    payload, _ = request_payload(bundle, build_messages("hi"), options, VisualBudget())
    assert payload.get("chat_template_kwargs") == expected
    result = ask(bundle, "hi 0", options)
    assert fake.payloads[-1].get("chat_template_kwargs") == expected
    info = format_info(result, options, bundle.model)
    assert f"thinking: {thinking}" in info
    assert ("chat_template_kwargs.enable_thinking" in info) == (thinking != "auto")


def test_reasoning_content_is_split_with_thinking_on(fake):
    fake.mode = "reasoning"
    result = ask(connect(fake.url), "hi 0", resolve_options("Greedy", 8, thinking="on"))
    assert result.thinking == "Let me look." and result.text.startswith("w0_0") and not result.answer_cut_off


def test_thinking_on_without_a_reasoning_parser_cut_off_is_all_thinking(fake):
    fake.mode = "think_open"  # the server streams reasoning without </think> (the prompt opened <think>)
    result = ask(connect(fake.url), "hi 0", resolve_options("Greedy", 8, thinking="on"))
    assert result.text == "" and result.thinking.startswith("thought0") and result.answer_cut_off


def test_batch_caption_sends_thinking_off_with_every_request(fake):
    job = make_job("short", resolve_options("Greedy", 8, thinking="off"), batch_size=4)
    images = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8) for _ in range(3)]
    captions = caption_images(connect(fake.url), images, job)
    assert len(captions) == 3
    chats = [p for p in fake.payloads if "messages" in p]
    assert len(chats) == 3 and all(p["chat_template_kwargs"] == {"enable_thinking": False} for p in chats)


@pytest.mark.parametrize("probe, mode, expected", [
    (True, "auto", True), (False, "auto", False), (None, "auto", None),
    (True, "on", True), (None, "on", True), (False, "on", None),  # False: an Instruct template may ignore "on"
    (False, "off", False), (None, "off", False), (True, "off", None),  # True: a Thinking template may ignore "off"
])
def test_what_the_switch_tells_about_the_servers_prompt(probe, mode, expected):
    """The server does not say whether its template has the switch: where the probe saw the template's own default
    go the other way, whether <think> was opened is not known (only a leading <think> or a </think> then counts)."""
    from qwen3vl_pack.loaders.backends.served import ServerBundle, _opened

    bundle = ServerBundle(base_url="http://127.0.0.1:9/v1", model="m", opens_think=probe)
    assert _opened(bundle, mode) is expected
