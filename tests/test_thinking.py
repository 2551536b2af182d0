"""Thinking models (template ends with ``<|im_start|>assistant\\n<think>\\n``), with the real Thinking template
in a tiny model folder: an output stopped by max_new_tokens is all thinking, never an answer."""

from __future__ import annotations

import pytest
import torch

from qwen3vl_pack.loaders.batch import caption_images, make_job
from qwen3vl_pack.loaders.grounding import ground
from qwen3vl_pack.nodes.generate import Qwen3VLGenerate
from qwen3vl_pack.utils import text as text_utils
from qwen3vl_pack.utils.errors import InputError
from qwen3vl_pack.utils.presets import resolve_options

pytestmark = pytest.mark.usefixtures("clean_cache")
DRAFT = 'I should find the cat. Maybe [{"bbox_2d": [100, 100, 500, 500], "label": "cat"}]? Let me check again'


def _image(seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 64, 96, 3, generator=torch.Generator().manual_seed(seed))


def _script(monkeypatch, bundle, output: str, eos: bool):
    """The model 'writes' ``output`` (then <|im_end|> if ``eos``, else it runs out of tokens): the real template,
    processor and decoding run; only the sampled tokens are scripted."""
    tok = bundle.processor.tokenizer
    ids = tok.encode(output, add_special_tokens=False) + ([tok.convert_tokens_to_ids("<|im_end|>")] if eos else [])

    def generate(input_ids, **_):
        new = torch.tensor([ids] * input_ids.shape[0], dtype=input_ids.dtype)
        return torch.cat([input_ids, new], dim=1)

    monkeypatch.setattr(bundle.model, "generate", generate)
    return len(ids)


# ---- the pure contract (shared with any engine) ----------------------------------------------------------------


@pytest.mark.parametrize("prompt,opened", [
    ("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n", True),     # Thinking template
    ("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", False),             # Instruct template
    ("<|im_start|>assistant\n<think>\n\n</think>\n\n", False),                      # thinking switched off
    ("<|im_start|>user\nwhat does <think> mean?<|im_end|>\n<|im_start|>assistant\n", False),  # typed by the user
])
def test_prompt_opens_think(prompt, opened):
    assert text_utils.prompt_opens_think(prompt) is opened


@pytest.mark.parametrize("raw,opened,thinking,answer,cut", [
    ("reasoning</think>\n\nanswer", True, "reasoning", "answer", False),
    ("reasoning that ran out of tok", True, "reasoning that ran out of tok", "", True),
    ("plain answer", False, "", "plain answer", False),
    ("<think>cut off while thinking", False, "cut off while thinking", "", True),
    ("<think>r</think>a", False, "r", "a", False),
    ("  <think>cut off", False, "cut off", "", True),             # the answer starts with it: thinking
    ("a grey <think> square", False, "", "a grey <think> square", False),  # anywhere else: words of the answer
    ("a grey </think> square", False, "", "a grey </think> square", False),
    ("words <think> more", True, "words <think> more", "", True),  # the prompt opened it: all reasoning
    ("reasoning</think>answer", None, "reasoning", "answer", False),  # unknown prompt: </think> still ends it
    ("a grey <think> square", None, "", "a grey <think> square", False),
])
def test_split_thinking_with_an_opened_prompt(raw, opened, thinking, answer, cut):
    assert text_utils.split_thinking(raw, opened) == (thinking, answer)
    assert text_utils.ends_in_thinking(raw, opened) is cut


# ---- the real Thinking template in a tiny model folder ---------------------------------------------------------


def test_thinking_template_opens_think(thinking, dense):
    messages = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    kw = dict(tokenize=False, add_generation_prompt=True)
    assert thinking.processor.apply_chat_template(messages, **kw).endswith("<|im_start|>assistant\n<think>\n")
    assert dense.processor.apply_chat_template(messages, **kw).endswith("<|im_start|>assistant\n")


def test_cut_off_thinking_is_not_an_answer(thinking):
    """Real generation (random weights, greedy): 8 tokens and no </think> -> all thinking, text empty."""
    text, thought, info, chat = Qwen3VLGenerate().generate(thinking, "Describe this image.", "Greedy", 8,
                                                           image=_image())
    assert text == ""
    assert thought and "answer cut off" in info and "after 8 generated tokens (max_new_tokens 8)" in info
    assert chat.messages[-1]["content"] == [{"type": "text", "text": ""}]  # the chat keeps no draft as answer


def test_finished_thinking_splits_reasoning_and_answer(thinking, monkeypatch):
    _script(monkeypatch, thinking, "The image is grey.</think>\n\nA grey square.", eos=True)
    text, thought, info, _ = Qwen3VLGenerate().generate(thinking, "Describe.", "Greedy", 64, image=_image())
    assert (thought, text) == ("The image is grey.", "A grey square.")
    assert "answer cut off" not in info


def test_instruct_output_without_tags_stays_the_answer(dense, monkeypatch):
    _script(monkeypatch, dense, "A grey square", eos=False)
    text, thought, info, _ = Qwen3VLGenerate().generate(dense, "Describe.", "Greedy", 64, image=_image())
    assert (thought, text) == ("", "A grey square") and "answer cut off" not in info


def test_grounding_never_parses_boxes_out_of_draft_reasoning(thinking, monkeypatch):
    tokens = _script(monkeypatch, thinking, DRAFT, eos=False)
    with pytest.raises(InputError, match="^max_new_tokens: the model was still thinking") as err:
        ground(thinking, _image(), "cat", "boxes", resolve_options("Greedy", tokens))
    assert "Raise max_new_tokens" in str(err.value)


def test_grounding_after_thinking_uses_the_answer_only(thinking, monkeypatch):
    _script(monkeypatch, thinking, DRAFT + '</think>[{"bbox_2d": [0, 0, 500, 1000], "label": "cat"}]', eos=True)
    outputs, answer = ground(thinking, _image(), "cat", "boxes", resolve_options("Greedy", 512))
    assert outputs.bboxes == [[[0.0, 0.0, 48.0, 64.0]]]  # the answer's box, not the draft's
    assert "Let me check" not in answer


def test_batch_caption_never_writes_a_draft(thinking, monkeypatch):
    from qwen3vl_pack.utils.captions import CutOffCaption

    tokens = _script(monkeypatch, thinking, "A caption could be: a grey", eos=False)
    images = [torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8) for _ in range(3)]
    job = make_job("short", resolve_options("Greedy", tokens), batch_size=2)
    captions = caption_images(thinking, images, job)  # no error: each cut-off image is marked, never a draft
    assert len(captions) == 3 and all(isinstance(c, CutOffCaption) and c == "" for c in captions)
