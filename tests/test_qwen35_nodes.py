"""Every node on tiny random Qwen3.5 folders (dense and MoE): the thinking switch, images, video timestamps, chat,
system prompt, live text, Cancel, Grounding, Parse Grounding, Task, Batch Caption, folders and captions.

Random weights give random text: assertions on rendered prompts, shapes, types and equalities, never on wording.
Skipped where transformers < 5.2 has no Qwen3.5 (tests/test_qwen35_loader.py tests the refusal there).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from qwen3vl_pack.loaders.cache import MODEL_CACHE, load_model
from qwen3vl_pack.loaders.tasks import converse
from qwen3vl_pack.nodes.caption import Qwen3VLBatchCaption, Qwen3VLLoadImageFolder, Qwen3VLSaveCaptions
from qwen3vl_pack.nodes.generate import Qwen3VLGenerate
from qwen3vl_pack.nodes.grounding import Qwen3VLGrounding, Qwen3VLParseGrounding
from qwen3vl_pack.nodes.task import Qwen3VLTask
from qwen3vl_pack.utils.presets import resolve_options
from qwen3vl_pack.utils.task_prompts import TASKS

pytestmark = pytest.mark.usefixtures("clean_cache")

ASSISTANT = "<|im_start|>assistant\n"
THINK_OPEN_END = ASSISTANT + "<think>\n"
THINK_OFF_END = ASSISTANT + "<think>\n\n</think>\n\n"
STAMP = re.compile(r"<(\d+\.\d) seconds>")


def _image(seed=0, h=96, w=128) -> torch.Tensor:
    return torch.rand(1, h, w, 3, generator=torch.Generator().manual_seed(seed))


def _prompt_of(info: str) -> str:
    return info.split("--- rendered prompt ---\n", 1)[1]


def _generate(bundle, thinking=None, tokens=4, **kw):
    extra = {} if thinking is None else {"thinking": thinking}
    return Qwen3VLGenerate().generate(bundle, kw.pop("prompt", "Describe this image."), kw.pop("preset", "Greedy"),
                                      tokens, **kw, **extra)


def test_generate_thinking_switch_in_the_rendered_prompt(qwen35):
    image = _image()
    rendered = {}
    for mode in ("auto", "on", "off"):
        text, thinking, info, chat = _generate(qwen35, mode, image=image)
        rendered[mode] = _prompt_of(info)
        assert f"thinking: {mode}" in info and "changed nothing" not in info
        assert isinstance(text, str) and isinstance(thinking, str) and chat.turns == 1
        assert "<|image_pad|>" in rendered[mode]
    assert rendered["auto"].endswith(THINK_OPEN_END)  # the larger Qwen3.5 sizes think by default
    assert rendered["on"] == rendered["auto"]
    assert rendered["off"].endswith(THINK_OFF_END)
    assert rendered["off"][:-len(THINK_OFF_END)] == rendered["on"][:-len(THINK_OPEN_END)]


def test_generate_thinking_on_puts_the_draft_in_thinking(qwen35, monkeypatch):
    monkeypatch.setattr(qwen35.model.generation_config, "eos_token_id", None)  # exactly 6 tokens
    text, thinking, info, _ = _generate(qwen35, "on", tokens=6, image=_image())
    assert text == "" and thinking  # no </think> in 6 random tokens: still thinking, never a draft answer
    assert info.startswith("answer cut off: the model was still thinking")


def test_small_template_defaults_to_no_thinking(qwen35_models):
    small = load_model(str(qwen35_models["small"]), [], dtype="fp32", attention="sdpa", device="cpu")
    assert _prompt_of(_generate(small, "auto")[2]).endswith(THINK_OFF_END)  # Qwen3.5-0.8B answers directly
    assert _prompt_of(_generate(small, "on")[2]).endswith(THINK_OPEN_END)


def test_switch_on_qwen3vl_changes_nothing_and_info_says_so(dense):
    auto = _generate(dense, "auto")[2]
    for mode in ("on", "off"):
        info = _generate(dense, mode)[2]
        assert "changed nothing, this model's chat template has no thinking switch" in info
        assert _prompt_of(info) == _prompt_of(auto)


def test_video_timestamps_are_the_true_times(qwen35, dense):
    frames = torch.rand(48, 64, 96, 3, generator=torch.Generator().manual_seed(1))
    info35 = _generate(qwen35, "off", prompt="What happens?", video=frames, video_fps=12.0)[2]
    info_vl = _generate(dense, None, prompt="What happens?", video=frames, video_fps=12.0)[2]
    stamps = [float(s) for s in STAMP.findall(info35)]
    assert stamps and stamps == sorted(stamps) and stamps[-1] <= 4.0  # a 4-second clip
    assert stamps == [float(s) for s in STAMP.findall(info_vl)]  # the same processor, the same true times
    assert "<|video_pad|>" in _prompt_of(info35)


def test_second_turn_and_system_prompt_follow_the_template(qwen35):
    text1, thinking1, info1, chat = _generate(qwen35, "on", tokens=3, image=_image(), system_prompt="Be brief.")
    assert _prompt_of(info1).startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    text2, _, info2, chat2 = _generate(qwen35, "on", tokens=3, prompt="And the colours?", chat=chat)
    second = _prompt_of(info2)
    assert chat2.turns == 2 and second.startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    assert second.count("<|image_pad|>") >= 1 and second.endswith(THINK_OPEN_END)
    # the template drops earlier turns' reasoning: one <think> only, the one that opens this answer
    assert second.count("<think>") == 1 and (not thinking1 or thinking1 not in second)
    off = _prompt_of(_generate(qwen35, "off", tokens=2, prompt="And the colours?", chat=chat)[2])
    assert off.endswith(THINK_OFF_END) and off[:-len(THINK_OFF_END)] == second[:-len(THINK_OPEN_END)]


def test_live_text_and_cancel(qwen35):
    texts, steps = [], []

    def stop_at_three(n):
        steps.append(n)
        if n >= 3:
            raise InterruptedError("Cancel")

    options = resolve_options("Greedy", 8, thinking="off")
    reply = converse(qwen35, "Describe.", options, [torch.rand(3, 64, 64)], on_text=lambda t, a: texts.append((t, a)))
    assert texts and texts[-1] == (reply.result.thinking, reply.result.text)
    with pytest.raises(InterruptedError):
        converse(qwen35, "Describe.", options, on_step=stop_at_three)
    assert max(steps) == 3
    assert converse(qwen35, "Describe.", options).result.new_tokens >= 1  # the next run works


def test_grounding_and_parse_grounding(qwen35):
    image = torch.cat([_image(0), _image(1)])
    bboxes, mask, preview, json_text, text = Qwen3VLGrounding().ground(qwen35, image, "cat", "boxes", 6, "Greedy")
    assert preview.shape == image.shape and mask.shape == image.shape[:3]
    assert isinstance(bboxes, list) and len(bboxes) == 2 and isinstance(json_text, str)
    assert text.count("=== image") == 2
    answer = '[{"bbox_2d": [100, 250, 500, 750], "label": "cat"}]'  # relative 0..1000, as Qwen3-VL
    bboxes, mask, _, _ = Qwen3VLParseGrounding().parse(answer, image[:1], "qwen3")
    assert [[round(v) for v in box] for box in bboxes[0]] == [[13, 24, 64, 72]]
    assert mask.shape == (1, 96, 128)


@pytest.mark.parametrize("task", list(TASKS))
def test_every_task_runs(qwen35_models, task):
    bundle = load_model(str(qwen35_models["dense"]), [], dtype="fp32", attention="sdpa", device="cpu")
    spec = TASKS[task]
    frames = torch.rand(8, 64, 64, 3, generator=torch.Generator().manual_seed(2))
    kw = dict(video=frames, video_fps=4.0) if spec.video else dict(image=_image())
    outputs = Qwen3VLTask().run(bundle, task, "cat" if spec.needs_target else "", "auto", "Flux short", 60.0, 4,
                                "Greedy", 0, **kw)
    assert isinstance(outputs, tuple) and len(outputs) == len(Qwen3VLTask.RETURN_TYPES)


def test_task_on_moe_with_thinking_on_is_refused_when_cut_off(qwen35_models):
    from qwen3vl_pack.utils.errors import InputError

    bundle = load_model(str(qwen35_models["moe"]), [], dtype="fp32", attention="sdpa", device="cpu")
    bundle.model.generation_config.eos_token_id = None
    with pytest.raises(InputError, match="^max_new_tokens: the model was still thinking"):
        Qwen3VLTask().run(bundle, "ocr", "", "auto", "Flux short", 60.0, 3, "Greedy", 0, image=_image(),
                          thinking="on")
    MODEL_CACHE.clear()


def _pixels(seed, w, h):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _token_ids(bundle, images, prompts, one_at_a_time: bool) -> list[list[int]]:
    from qwen3vl_pack.loaders.tasks import run_conversations
    from qwen3vl_pack.utils.messages import build_messages

    options = resolve_options("Greedy", 8, thinking="off")
    convs = [build_messages(p, [img]) for img, p in zip(images, prompts, strict=True)]
    if one_at_a_time:
        return [run_conversations(bundle, [conv], options)[0].token_ids for conv in convs]
    return [r.token_ids for r in run_conversations(bundle, convs, options)]


def test_batched_greedy_equals_one_at_a_time_on_the_hybrid_stack(qwen35, monkeypatch):
    """Left padding meets the linear-attention state: images and prompts of different lengths in one batch."""
    monkeypatch.setattr(qwen35.model.generation_config, "eos_token_id", None)  # every row runs all 8 tokens
    sizes = [(96, 64), (200, 150), (64, 64), (128, 300)]
    images = [torch.from_numpy(_pixels(i, w, h)).permute(2, 0, 1).contiguous() for i, (w, h) in enumerate(sizes)]
    prompts = ["Caption.", "Write one long detailed caption of everything in this picture, please.", "Tags?",
               "What is in the picture? A cat sits on a red car in the sun."]
    single = _token_ids(qwen35, images, prompts, True)
    batched = _token_ids(qwen35, images, prompts, False)
    assert len(single) == len(batched) == 4 and all(len(ids) == 8 for ids in single)
    assert batched == single


def test_batch_caption_node_same_captions_as_single_and_folder_round_trip(qwen35, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, (w, h) in enumerate([(96, 64), (200, 150), (64, 64)]):
        Image.fromarray(_pixels(i, w, h)).save(folder / f"img{i}.png")
    images, paths = Qwen3VLLoadImageFolder().load(str(folder), False, "png", "natural", 0, 0, False)
    node = Qwen3VLBatchCaption()
    args = dict(style=["short"], preset=["Greedy"], max_new_tokens=[6], prefix=["ohwx"], suffix=[""])
    batched = node.caption([qwen35], images, batch_size=[3], **args)[0]
    single = node.caption([qwen35], images, batch_size=[1], thinking=["off"], **args)[0]
    assert batched == single and len(batched) == 3 and all(c.startswith("ohwx") for c in batched)
    saved = Qwen3VLSaveCaptions().save(batched, paths, ["overwrite"], [".txt"], [""])
    assert saved["result"][0].startswith("3 caption(s): 3 written")
    assert sorted(p.name for p in folder.glob("*.txt")) == ["img0.txt", "img1.txt", "img2.txt"]
    assert (folder / "img0.txt").read_text(encoding="utf-8").strip() == batched[0].strip()


def test_cli_thinking_switch_on_qwen35(qwen35_models, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]

    def cli(*args):
        return subprocess.run([sys.executable, str(root / "cli.py"), *args], capture_output=True, text=True,
                              timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})

    model = str(qwen35_models["moe"])
    for mode, end in (("off", "<think>\n\n</think>\n\n"), ("on", "assistant\n<think>\n")):
        out = cli("ask", "--model", model, "--image", str(root / "assets" / "sample.png"), "--preset", "Greedy",
                  "--max-new-tokens", "4", "--thinking", mode, "--info", "Describe.")
        assert out.returncode == 0, out.stderr
        assert f"thinking: {mode}" in out.stdout and out.stdout.rstrip("\n").endswith(end.rstrip("\n"))
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, (w, h) in enumerate([(96, 64), (64, 128)]):
        Image.fromarray(_pixels(i, w, h)).save(folder / f"a{i}.png")
    out = cli("caption", str(folder), "--model", model, "--batch-size", "2", "--max-new-tokens", "6",
              "--no-progress")
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in folder.glob("*.txt")) == ["a0.txt", "a1.txt"]
    bad = cli("ask", "--model", model, "--thinking", "maybe", "hi")
    assert bad.returncode == 2 and "--thinking" in bad.stderr
