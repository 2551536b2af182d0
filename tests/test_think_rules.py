"""``<think>`` counts only when the prompt opened it or the answer starts with it; one answer cut off while thinking
costs only its own caption / result (issue 21), on the tiny Instruct and Thinking models with scripted answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from qwen3vl_pack.cli_caption import _summary
from qwen3vl_pack.loaders.batch import FolderSummary, caption_files, make_job
from qwen3vl_pack.loaders.grounding import ground
from qwen3vl_pack.nodes.caption import Qwen3VLBatchCaption, Qwen3VLSaveCaptions
from qwen3vl_pack.nodes.generate import Qwen3VLGenerate
from qwen3vl_pack.nodes.run_task import Qwen3VLRunTask
from qwen3vl_pack.utils.errors import InputError
from qwen3vl_pack.utils.presets import resolve_options

pytestmark = pytest.mark.usefixtures("clean_cache")
CUT = {3, 8, 13}  # 0-based: the answers that open <think> (not at their start) and never close it
FINISHED = "I look at it.</think>A grey square."
OPEN = "A grey <think> square, then more words"


def _script_rows(monkeypatch, bundle, answers: list[str]) -> int:
    """Row i of the run (counted across batches, in order) 'writes' ``answers[i]`` and stops; returns the most
    tokens any answer takes (so max_new_tokens never cuts one off by itself)."""
    tok = bundle.processor.tokenizer
    end = tok.convert_tokens_to_ids("<|im_end|>")
    pad = tok.pad_token_id
    encoded = [tok.encode(a, add_special_tokens=False) + [end] for a in answers]
    width = max(len(e) for e in encoded)
    state = {"row": 0}

    def generate(input_ids, **_):
        rows = []
        for _ in range(input_ids.shape[0]):
            ids = encoded[state["row"]]
            rows.append(ids + [pad] * (width - len(ids)))
            state["row"] += 1
        return torch.cat([input_ids, torch.tensor(rows, dtype=input_ids.dtype)], dim=1)

    monkeypatch.setattr(bundle.model, "generate", generate)
    return width + 8


def _folder(tmp_path, n: int = 16):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(n):
        arr = np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"img{i:02d}.png")
    return folder, sorted(folder.glob("*.png"))


def _answers() -> list[str]:
    return [OPEN if i in CUT else FINISHED for i in range(16)]


@pytest.mark.parametrize("batch_size", [8, 16])
def test_three_of_sixteen_open_think_instruct_saves_all_thinking_saves_thirteen(dense, thinking, tmp_path,
                                                                                 monkeypatch, batch_size):
    folder, files = _folder(tmp_path)
    # An Instruct prompt never opened <think>: every answer is a caption, tags and all (none starts with <think>).
    tokens = _script_rows(monkeypatch, dense, _answers())
    job = make_job("short", resolve_options("Greedy", tokens), batch_size=batch_size)
    summary = caption_files(dense, files, job, "overwrite")
    assert len(summary.report.written) == 16 and not summary.report.cut_off
    assert "cut off" not in _summary(summary, 0, False)
    for f in files:
        f.with_suffix(".txt").unlink()

    # The Thinking template opened <think>: the 3 answers that never close it are cut off, the 13 others saved.
    tokens = _script_rows(monkeypatch, thinking, _answers())
    job = make_job("short", resolve_options("Greedy", tokens), batch_size=batch_size)
    summary = FolderSummary()
    caption_files(thinking, files, job, "overwrite", summary=summary)
    written = sorted(p.stem for p in folder.glob("*.txt"))
    assert written == [f.stem for i, f in enumerate(files) if i not in CUT]
    assert all(p.read_text(encoding="utf-8") == "A grey square.\n" for p in folder.glob("*.txt"))
    assert [p.name for p in summary.report.cut_off] == [files[i].with_suffix(".txt").name for i in sorted(CUT)]
    text = _summary(summary, 0, False)
    assert "3 caption(s) cut off while thinking, not written" in text and "--max-new-tokens" in text
    assert all(f"img{i:02d}.txt" in text for i in CUT)


def test_batch_caption_node_keeps_the_other_captions_and_names_the_cut_ones(thinking, tmp_path, monkeypatch):
    folder, files = _folder(tmp_path)
    tokens = _script_rows(monkeypatch, thinking, _answers())
    images = [torch.from_numpy(np.asarray(Image.open(f), dtype=np.float32) / 255.0)[None] for f in files]
    captions, report = Qwen3VLBatchCaption().caption([thinking], images, ["short"], [8], ["Greedy"], [tokens],
                                                     [""], [""])
    assert len(captions) == 16 and [i for i, c in enumerate(captions) if c == ""] == sorted(CUT)
    assert "13 of 16 image(s) captioned" in report and "image 4, 9, 14." in report and "max_new_tokens" in report
    saved = Qwen3VLSaveCaptions().save(captions, [str(f) for f in files], ["overwrite"], [".txt"])["result"][0]
    assert "13 written" in saved and "3 cut off while thinking (not written)" in saved
    assert len(list(folder.glob("*.txt"))) == 13


def test_grounding_and_task_empty_only_for_the_cut_off_image(thinking, monkeypatch):
    box = '[{"bbox_2d": [0, 0, 500, 1000], "label": "cat"}]'
    answers = ["Found it.</think>" + box, "Still looking at [100, 100, 500, 500]", "Found it.</think>" + box]
    image = torch.rand(3, 64, 96, 3)
    tokens = _script_rows(monkeypatch, thinking, answers)
    outputs, text = ground(thinking, image, "cat", "boxes", resolve_options("Greedy", tokens))
    assert outputs.bboxes == [[[0.0, 0.0, 48.0, 64.0]], [], [[0.0, 0.0, 48.0, 64.0]]]
    assert "image 2 of 3: the model was still thinking" in text

    points = '[{"point_2d": [500, 500], "label": "cat"}]'
    _script_rows(monkeypatch, thinking, ["ok</think>" + points, "hmm [1, 2]", "ok</think>" + points])
    out = Qwen3VLRunTask().run(thinking, "points", "cat", "Greedy", tokens, image=image)
    assert "image 2 of 3" in out[0] and "image 2 of 3" in out[9]
    assert out[4][1].sum() == 0 and out[4][0].sum() > 0 and out[4][2].sum() > 0  # no point disc for image 2

    _script_rows(monkeypatch, thinking, ["hmm", "hmm", "hmm"])  # every image cut off: an error naming the input
    with pytest.raises(InputError, match="^max_new_tokens: .*every image \\(3\\)"):
        Qwen3VLRunTask().run(thinking, "points", "cat", "Greedy", tokens, image=image)


def test_instruct_answer_with_an_unclosed_think_inside_is_all_text(dense, monkeypatch):
    """Papercut: an Instruct model's own '<think>' mid-answer left info saying 'text is empty' beside a text."""
    _script_rows(monkeypatch, dense, ["Words before <think> and after"])
    text, thought, info, _ = Qwen3VLGenerate().generate(dense, "Describe.", "Greedy", 64, image=torch.rand(1, 32, 32, 3))
    assert (text, thought) == ("Words before <think> and after", "") and "answer cut off" not in info
    _script_rows(monkeypatch, dense, ["<think>Only reasoning, never closed"])
    text, thought, info, _ = Qwen3VLGenerate().generate(dense, "Describe.", "Greedy", 64, image=torch.rand(1, 32, 32, 3))
    assert text == "" and thought == "Only reasoning, never closed" and "text is empty" in info


def test_the_tiny_instruct_stand_in_never_writes_think_tags(dense, thinking):
    tok = dense.processor.tokenizer
    tags = tok.convert_tokens_to_ids(["<think>", "</think>"])
    assert sorted(dense.model.generation_config.suppress_tokens) == sorted(tags)
    assert not thinking.model.generation_config.suppress_tokens  # the Thinking stand-in must be able to close it
    out = dense.model.generate(input_ids=torch.tensor([[tok.convert_tokens_to_ids("<|im_start|>")]]),
                               max_new_tokens=48, do_sample=True, top_k=0, temperature=5.0)
    assert not set(out[0].tolist()) & set(tags)
