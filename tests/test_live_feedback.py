"""What a running node shows: live text through ComfyUI's send_progress_text and a throttled progress bar.

A stand-in PromptServer and ProgressBar record the calls the real ones would get; the engines, the nodes and
the throttles are the real ones (tiny model in-process, the fake streaming server for the served path).
"""

from __future__ import annotations

import time
import types

import pytest
import torch

from qwen3vl_pack.loaders import engine
from qwen3vl_pack.loaders.backends import openai_client, served
from qwen3vl_pack.loaders.backends.served import connect
from qwen3vl_pack.nodes import comfy_services
from qwen3vl_pack.nodes.caption import Qwen3VLBatchCaption
from qwen3vl_pack.nodes.generate import Qwen3VLGenerate
from qwen3vl_pack.nodes.grounding import Qwen3VLGrounding
from qwen3vl_pack.utils.feedback import ANSWER_MARK, THINKING_MARK, Throttle, live_text
from qwen3vl_pack.utils.presets import resolve_options

from .fake_openai_server import FakeServer

NODE_ID = "7"
INTERVAL = 0.1
SLACK = 0.02  # the time stamps are taken after the call, decode time varies a little


class StandInServer:
    """Records what ``PromptServer.instance.send_progress_text`` would put on the websocket."""

    client_id = "client-1"
    last_node_id = None

    def __init__(self):
        self.texts: list[tuple[str, str, str | None, float]] = []

    def send_progress_text(self, text, node_id, sid=None):
        self.texts.append((node_id, text, sid, time.monotonic()))


class Recorder:
    def __init__(self):
        self.server = StandInServer()
        self.bars: list[tuple[int, int, float]] = []
        self.checks = 0

    @property
    def texts(self) -> list[str]:
        return [t for _, t, _, _ in self.server.texts]


@pytest.fixture()
def comfy(monkeypatch):
    rec = Recorder()

    class Bar:
        def __init__(self, total):
            self.total = total

        def update_absolute(self, value, total=None):
            rec.bars.append((value, total, time.monotonic()))

    def check():
        rec.checks += 1

    monkeypatch.setattr(comfy_services, "PromptServer", types.SimpleNamespace(instance=rec.server))
    monkeypatch.setattr(comfy_services, "get_executing_context",
                        lambda: types.SimpleNamespace(prompt_id="p", node_id=NODE_ID, list_index=None))
    monkeypatch.setattr(comfy_services, "comfy_utils", types.SimpleNamespace(ProgressBar=Bar))
    monkeypatch.setattr(comfy_services, "model_management",
                        types.SimpleNamespace(throw_exception_if_processing_interrupted=check))
    return rec


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def _image(seed=0):
    return torch.rand(1, 96, 128, 3, generator=torch.Generator().manual_seed(seed))


# --- pure parts ------------------------------------------------------------------------------------------------

def test_throttle_first_call_then_once_per_interval():
    now = [0.0]
    throttle = Throttle(0.1, clock=lambda: now[0])
    seen = []
    for step in range(30):  # 30 calls 0.01 s apart
        now[0] = step * 0.01
        seen.append(throttle.due())
    assert [i for i, due in enumerate(seen) if due] == [0, 10, 20]


def test_live_text_marks_thinking_and_keeps_the_end():
    assert live_text("", " an answer ") == "an answer"
    assert live_text("I look", "") == f"{THINKING_MARK}\nI look"
    assert live_text("I look", "two") == f"{THINKING_MARK}\nI look\n\n{ANSWER_MARK}\ntwo"
    assert live_text("", "x", heading="image 2 of 3") == "image 2 of 3\nx"
    long = live_text("", "a" * 50 + "END", limit=10)
    assert long == "…" + ("a" * 7) + "END"


def test_node_feedback_bounds_text_bursts_and_always_shows_the_last(comfy):
    feedback = comfy_services.NodeFeedback(100)
    for i in range(50):  # e.g. the final captions of 50 quick batches, all within a few milliseconds
        feedback.on_text("", f"caption {i}")
    assert comfy.texts == ["caption 0"]
    feedback.finish()
    assert comfy.texts == ["caption 0", "caption 49"]
    feedback.finish()  # nothing new: nothing sent
    assert len(comfy.texts) == 2


# --- nodes, in-process engine -----------------------------------------------------------------------------------

def test_generate_256_tokens_sends_throttled_progress_and_text(dense, comfy, monkeypatch):
    monkeypatch.setattr(dense.model.generation_config, "eos_token_id", None)  # exactly 256 tokens
    start = time.monotonic()
    text, _, info, _ = Qwen3VLGenerate().generate(dense, "Describe this image.", "Greedy", 256, image=_image())
    elapsed = time.monotonic() - start
    assert "generated tokens: 256" in info
    values = [v for v, _, _ in comfy.bars]
    assert values[0] == 1 and values[-1] == 256 and values == sorted(values)
    assert {t for _, t, _ in comfy.bars} == {256}
    assert len(values) <= elapsed / INTERVAL + 2  # at most ~10 per second, plus the first and the last
    assert all(g >= INTERVAL - SLACK for g in _gaps([t for _, _, t in comfy.bars])[:-1])
    assert comfy.checks >= 256  # Cancel is still checked at every decode step
    # live text: only on this node, to the client that queued the prompt, growing, ending with the answer
    assert {(node, sid) for node, _, sid, _ in comfy.server.texts} == {(NODE_ID, "client-1")}
    assert comfy.texts[-1] == text and len(comfy.texts) <= elapsed / INTERVAL + 2
    assert all(g >= INTERVAL - SLACK for g in _gaps([t for *_, t in comfy.server.texts])[:-1])
    print(f"\n256 tokens in {elapsed:.2f} s: {len(values)} progress updates, {len(comfy.texts)} text updates")


def test_progress_stops_at_the_last_token_of_a_short_answer(dense, comfy, monkeypatch):
    tok = dense.processor.tokenizer
    script = tok.encode(" a b c d e") + [tok.convert_tokens_to_ids("<|im_end|>")]
    _scripted(monkeypatch, dense.model, script, delay=0)
    text, _, info, _ = Qwen3VLGenerate().generate(dense, "hi", "Greedy", 100)
    n = len(script)
    assert f"generated tokens: {n}\n" in info  # ended by its end-of-sequence token, far below max_new_tokens
    assert [v for v, _, _ in comfy.bars] == [1, n]  # the first step and the last (drawn when the node finishes)
    assert comfy.texts == [text] and comfy.checks == n  # too fast for a text update: only the final text


def _thinking_template(processor) -> str:
    head, sep, tail = processor.chat_template.rpartition("'<|im_start|>assistant\\n'")
    assert sep, "the tiny model's template changed"
    return head + "'<|im_start|>assistant\\n<think>\\n'" + tail


def _scripted(monkeypatch, model, script: list[int], delay: float):
    """model.generate emits ``script`` token by token, calling the stopping criteria (the hooks) at each step."""

    def scripted_generate(self, input_ids=None, stopping_criteria=None, **kwargs):
        ids = input_ids
        for token in script:
            ids = torch.cat([ids, torch.tensor([[token]] * ids.shape[0])], dim=1)
            time.sleep(delay)
            stopping_criteria(ids, None)
        return ids

    monkeypatch.setattr(type(model), "generate", scripted_generate)


def test_thinking_model_shows_reasoning_as_it_arrives(dense, comfy, monkeypatch):
    tok = dense.processor.tokenizer
    monkeypatch.setattr(dense.processor, "chat_template", _thinking_template(dense.processor))
    reasoning = tok.encode(" Let me look at the image carefully. I see two objects." * 2)
    answer = tok.encode("</think> The answer is two.") + [tok.convert_tokens_to_ids("<|im_end|>")]
    _scripted(monkeypatch, dense.model, reasoning + answer, delay=0.4 / len(reasoning))
    text, thinking, _, _ = Qwen3VLGenerate().generate(dense, "Think.", "Thinking", 200)
    assert text == "The answer is two." and thinking.startswith("Let me look")
    assert all(t.startswith(THINKING_MARK) for t in comfy.texts)  # marked as thinking while it thinks
    answered = [ANSWER_MARK in t for t in comfy.texts]
    assert answered[0] is False and answered == sorted(answered)  # reasoning first, the answer once it starts
    assert comfy.texts[-1] == f"{THINKING_MARK}\n{thinking}\n\n{ANSWER_MARK}\n{text}"


def test_thinking_answer_cut_off_is_all_thinking(dense, monkeypatch):
    tok = dense.processor.tokenizer
    monkeypatch.setattr(dense.processor, "chat_template", _thinking_template(dense.processor))
    script = tok.encode(" Let me look at the image carefully.")
    _scripted(monkeypatch, dense.model, script, delay=0)
    texts = []
    results = engine.generate(dense.model, dense.processor, [[{"role": "user", "content": "Think."}]],
                              resolve_options("Thinking", len(script)),
                              on_text=lambda thinking, answer: texts.append((thinking, answer)), text_interval=0)
    assert (results[0].thinking, results[0].text) == ("Let me look at the image carefully.", "")
    assert texts and all(answer == "" for _, answer in texts) and texts[-1][0] == results[0].thinking


def test_grounding_shows_its_answer(dense, comfy):
    *_, text = Qwen3VLGrounding().ground(dense, _image(), "cat", "boxes", 16, "Greedy")
    assert comfy.texts[-1] == text and comfy.bars[0][0] == 1


def test_batch_caption_shows_the_current_image(dense, comfy):
    images = [_image(i) for i in range(3)]
    captions, _ = Qwen3VLBatchCaption().caption([dense], images, ["short"], [1], ["Greedy"], [6], [""], [""])
    headings = [t.split("\n", 1)[0] for t in comfy.texts]
    # in order, from the first image to the last (quick batches in between may be skipped: at most ~10/s)
    assert headings[0] == "image 1 of 3" and headings[-1] == "image 3 of 3" and headings == sorted(headings)
    assert set(headings) <= {"image 1 of 3", "image 2 of 3", "image 3 of 3"}
    assert len(captions) == 3
    values = [v for v, _, _ in comfy.bars]
    assert values[0] == 0 and values[-1] == 18 and values == sorted(values)


# --- served engine -----------------------------------------------------------------------------------------------

@pytest.fixture()
def fake(monkeypatch):
    monkeypatch.setattr(openai_client, "RETRY_BASE_DELAY", 0.01)
    served.forget_answers()
    with FakeServer(mode="cancel_watch", tokens=16) as server:  # 16 tokens, 0.05 s apart
        yield server
    served.forget_answers()


def test_served_generate_streams_text_to_the_node(fake, comfy):
    start = time.monotonic()
    text, _, info, _ = Qwen3VLGenerate().generate(connect(fake.url), "hi 0", "Greedy", 16)
    elapsed = time.monotonic() - start
    assert text == " ".join(f"w0_{i}" for i in range(16))
    assert len(comfy.texts) >= 3 and comfy.texts[-1] == text  # text grew on the node before the end
    assert all(text.startswith(t) for t in comfy.texts)
    assert len(comfy.texts) <= elapsed / INTERVAL + 2
    values = [v for v, _, _ in comfy.bars]
    assert values[0] == 1 and values[-1] == 16 and len(values) <= elapsed / INTERVAL + 2
