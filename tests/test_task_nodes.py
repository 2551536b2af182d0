"""Qwen3VL_RunTask (and the deprecated Qwen3VL_Task) / Qwen3VL_ParseTask on the tiny real Qwen3-VL (random text: structure, prompts and wiring only)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from qwen3vl_pack import NODE_CLASS_MAPPINGS
from qwen3vl_pack.loaders import vl_tasks
from qwen3vl_pack.nodes.option_nodes import Qwen3VLSampling
from qwen3vl_pack.nodes.run_task import Qwen3VLRunTask, Qwen3VLTaskOptions
from qwen3vl_pack.nodes.task import Qwen3VLParseTask, Qwen3VLTask
from qwen3vl_pack.tests.spies import spy_prepare_inputs
from qwen3vl_pack.utils.errors import InputError
from qwen3vl_pack.utils.task_prompts import TASK_NAMES, TASKS, build_task_prompt


def _batch(n: int, h: int = 64, w: int = 96) -> torch.Tensor:
    return torch.rand(n, h, w, 3, generator=torch.Generator().manual_seed(n))


@pytest.fixture()
def runs(monkeypatch):
    """Record every call the task loader makes (the real calls still run, with at most 6 new tokens)."""
    calls = []

    def wrap(name):
        real = getattr(vl_tasks, name)

        def record(bundle, first, options, *args, **kwargs):
            calls.append({"fn": name, "first": first, "options": options, "kwargs": kwargs})
            return real(bundle, first, dataclasses.replace(options, max_new_tokens=min(options.max_new_tokens, 6)),
                        *args, **kwargs)

        monkeypatch.setattr(vl_tasks, name, record)

    wrap("run_conversations")
    wrap("converse")
    return calls


def _task(bundle, task, image=None, video=None, video_fps=0.0, target="cat", max_new_tokens=6, **kwargs):
    extra = {k: kwargs.pop(k) for k in ("language", "style", "fov") if k in kwargs}
    options = None
    if extra:  # what only some tasks read comes from a Task Options node, checked there
        options = Qwen3VLTaskOptions().options(extra.get("language", "auto"), extra.get("style", "Flux short"),
                                               extra.get("fov", 60.0))[0]
    return Qwen3VLRunTask().run(bundle, task, target, "Greedy", max_new_tokens, image=image, video=video,
                                video_fps=video_fps, task_options=options, **kwargs)


def test_public_contract():
    for node_id in ("Qwen3VL_RunTask", "Qwen3VL_Task", "Qwen3VL_ParseTask"):
        cls = NODE_CLASS_MAPPINGS[node_id]
        assert cls.RETURN_TYPES == ("STRING", "STRING", "STRING", "BBOX", "MASK", "IMAGE", "STRING", "STRING",
                                    "STRING", "STRING")
        assert cls.RETURN_NAMES == ("text", "document", "json", "bboxes", "mask", "preview", "points", "items",
                                    "frames", "raw")
        assert cls.OUTPUT_IS_LIST == (False,) * 7 + (True, True, False)
    required = Qwen3VLTask.INPUT_TYPES()["required"]
    assert list(required) == ["model", "task", "target", "language", "style", "fov", "max_new_tokens", "preset", "seed"]
    assert required["preset"][1]["default"] == "Greedy" and required["max_new_tokens"][1]["default"] == 0
    assert list(Qwen3VLTask.INPUT_TYPES()["optional"]) == ["image", "video", "video_fps", "max_visual_tokens",
                                                           "thinking"]
    assert Qwen3VLTask.INPUT_TYPES()["optional"]["video_fps"][1]["forceInput"] is True
    assert Qwen3VLTask.DEPRECATED is True and required["seed"][1]["control_after_generate"] is True
    lean = Qwen3VLRunTask.INPUT_TYPES()
    assert list(lean["required"]) == ["model", "task", "target", "preset", "max_new_tokens"]
    assert list(lean["optional"])[:6] == ["image", "video", "video_fps", "max_visual_tokens", "sampling", "task_options"]
    assert list(Qwen3VLTaskOptions.INPUT_TYPES()["required"]) == ["language", "style", "fov"]


def test_old_task_layout_still_runs_with_its_values_in_place(dense, runs):
    """Workflows saved with the first Task layout load the deprecated node: same values, same prompt and seed."""
    old = Qwen3VLTask().run(dense, "points", "cat", "auto", "Flux short", 60.0, 6, "VL", 1234, image=_batch(1))
    sampling = Qwen3VLSampling().settings(0.7, 0.8, 20, 1.0, 1.5, 1234)[0]
    new = Qwen3VLRunTask().run(dense, "points", "cat", "VL", 6, image=_batch(1), sampling=sampling)
    text = [[part for part in conv[-1]["content"] if part["type"] == "text"] for conv in (runs[0]["first"][0],
                                                                                        runs[1]["first"][0])]
    assert text[0] == text[1] and runs[0]["options"].seed == runs[1]["options"].seed == 1234
    assert old[9] == new[9]  # same seed and sampling values: the same answer


def test_task_takes_its_seed_from_a_sampling_node(dense, runs):
    sampling = Qwen3VLSampling().settings(0.9, 0.7, 5, 1.1, 0.5, 77)[0]
    Qwen3VLRunTask().run(dense, "ocr", "", "Greedy", 6, image=_batch(1), sampling=sampling)
    Qwen3VLRunTask().run(dense, "ocr", "", "VL", 6, image=_batch(1))
    first, second = runs[0]["options"], runs[1]["options"]
    assert (first.seed, first.temperature, first.top_k, first.do_sample) == (77, 0.9, 5, True)
    assert (second.seed, second.preset, second.temperature) == (0, "VL", 0.7)


def test_task_options_are_checked_and_named():
    with pytest.raises(InputError, match="^task_options:"):
        Qwen3VLRunTask().run(None, "ocr", "", "Greedy", 6, image=_batch(1), task_options={"language": "English"})
    for args, name in [(("Elvish", "Flux short", 60.0), "language"), (("auto", "Flux huge", 60.0), "style"),
                       (("auto", "Flux short", 0.0), "fov")]:
        with pytest.raises(InputError, match=f"^{name}:"):
            Qwen3VLTaskOptions().options(*args)


def test_batch_is_one_run_with_one_conversation_per_image_and_parse_task_reads_it_back(dense, runs, monkeypatch):
    processed = spy_prepare_inputs(monkeypatch)
    image = _batch(3)
    out = _task(dense, "text spotting", image)
    assert [c["fn"] for c in runs] == ["run_conversations"] and len(processed) == 1
    conversations = runs[0]["first"]
    assert len(conversations) == 3 and processed[0]["image_grid_thw"].shape == (3, 3)
    assert [c[-1]["content"][-1]["text"] for c in conversations] == [build_task_prompt("text spotting").user] * 3
    assert runs[0]["kwargs"]["max_visual_tokens"] == 2048  # the task's own image budget
    text, document, report, bboxes, mask, preview, points, items, frames, raw = out
    assert [f"=== image {i} ===" in raw for i in (1, 2, 3)] == [True] * 3
    assert len(bboxes) == 3 and mask.shape == (3, 64, 96) and preview.shape == image.shape
    assert [r["image"] for r in json.loads(report)] == [0, 1, 2] and frames == [""]
    again = Qwen3VLParseTask().parse(raw, "text spotting", 60.0, image=image)
    for mine, theirs in zip(out, again, strict=True):
        assert torch.equal(mine, theirs) if isinstance(mine, torch.Tensor) else mine == theirs


@pytest.mark.parametrize("task", TASK_NAMES)
def test_every_task_runs_with_well_typed_outputs(dense, runs, task):
    image, video = _batch(2), _batch(6, 32, 32)
    out = _task(dense, task, image, video, video_fps=6.0)
    text, document, report, bboxes, mask, preview, points, items, frames, raw = out
    assert all(isinstance(s, str) for s in (text, document, report, points, raw)) and json.loads(report) is not None
    assert isinstance(items, list) and items and isinstance(frames, list) and frames
    frames_shown = preview.shape[0] if TASKS[task].video else 2  # events: one key frame per event (>= 1)
    assert len(bboxes) == mask.shape[0] == preview.shape[0] == frames_shown >= 1
    assert preview.dtype == mask.dtype == torch.float32 and preview.shape[-1] == 3
    fn = "converse" if TASKS[task].video else "run_conversations"
    assert [c["fn"] for c in runs] == [fn]
    if task == "gui click":
        system = runs[0]["first"][0][0]
        assert system["role"] == "system" and "computer_use" in system["content"][0]["text"]


def test_max_new_tokens_zero_takes_the_task_default(dense, runs):
    _task(dense, "document html", _batch(1), max_new_tokens=0)
    _task(dense, "gui click", _batch(1), target="click Save", max_new_tokens=0)
    _task(dense, "ocr", _batch(1), max_new_tokens=77)
    assert [c["options"].max_new_tokens for c in runs] == [4096, 512, 77]


def test_video_events_use_the_frame_rate(dense, runs, monkeypatch):
    processed = spy_prepare_inputs(monkeypatch)
    video = _batch(24, 32, 32)
    out = _task(dense, "video events", image=_batch(1), video=video, video_fps=12.0)
    call = runs[0]
    assert call["fn"] == "converse" and call["first"] == build_task_prompt("video events").user
    assert call["kwargs"]["video"] is video and call["kwargs"]["video_sampling"].video_fps == 12.0
    assert "video_grid_thw" in processed[0] and "image_grid_thw" not in processed[0]
    assert json.loads(out[2])["fps"] == 12.0 and json.loads(out[2])["frames"] == 24


def test_image_prompt_from_a_video_alone(dense, runs):
    out = _task(dense, "image prompt", video=_batch(4, 32, 32), video_fps=4.0, style="Wan video medium")
    assert runs[0]["fn"] == "converse" and "Wan image-to-video" in runs[0]["first"]
    assert out[5].shape == (1, 32, 32, 3) and isinstance(out[7][0], str)


@pytest.mark.parametrize("task, kwargs, input_name", [
    ("points", {"target": "  "}, "target"),
    ("gui click", {"target": ""}, "target"),
    ("ocr", {"image": None}, "image"),
    ("video events", {"video": None, "video_fps": 10.0}, "video"),
    ("video events", {"video_fps": 0.0}, "video_fps"),
    ("3d boxes", {"fov": 0.0}, "fov"),
    ("ocr", {"language": "Elvish"}, "language"),
    ("ocr", {"image": torch.rand(1, 4, 4000, 3)}, "image"),
])
def test_bad_inputs_are_named_before_any_generation(dense, runs, task, kwargs, input_name):
    args = {"image": _batch(1), "video": _batch(4, 32, 32), "target": "cat", **kwargs}
    with pytest.raises(InputError, match=f"^{input_name}:"):
        _task(dense, task, **args)
    assert runs == []


@pytest.mark.parametrize("name, tasks", [("ocr_document.json", ["ocr", "document html"]),
                                         ("points_to_sam2.json", ["points"]), ("video_events.json", ["video events"])])
def test_task_workflows(name, tasks):
    wf = json.loads((Path(__file__).resolve().parents[1] / "workflows" / name).read_text(encoding="utf-8"))
    nodes = {n["id"]: n for n in wf["nodes"]}
    task_nodes = [n for n in wf["nodes"] if n["type"] == "Qwen3VL_RunTask"]
    assert not [n for n in wf["nodes"] if n["type"] == "Qwen3VL_Task"]  # shipped workflows use the lean node
    assert [n["widgets_values"][0] for n in task_nodes] == tasks
    assert all(n["widgets_values"][3] == 0 for n in task_nodes)  # max_new_tokens: the task's default
    note = next(n for n in wf["nodes"] if n["type"] == "Note")["widgets_values"][0]
    assert "models/LLM" in note
    fed = {(nodes[lk[1]]["type"], task_nodes[0]["inputs"][lk[4]]["name"]) for lk in wf["links"] if lk[3] == task_nodes[0]["id"]}
    if name == "video_events.json":
        assert fed == {("Qwen3VL_ModelLoader", "model"), ("GetVideoComponents", "video"),
                       ("GetVideoComponents", "video_fps")}
        assert "Select Images" in note
    else:
        assert fed == {("Qwen3VL_ModelLoader", "model"), ("LoadImage", "image")}
    if name == "points_to_sam2.json":
        assert "coordinates_positive" in note and "Sam2Segmentation" in note


def test_task_node_shows_live_text_and_refuses_a_thinking_draft(tmp_path, monkeypatch):
    """Live text reaches the node like Generate's; a Thinking answer cut off while thinking is not parsed."""
    from qwen3vl_pack.loaders.cache import load_model
    from qwen3vl_pack.nodes import comfy_services
    from qwen3vl_pack.tests.tiny_model import build_tiny_model
    from qwen3vl_pack.utils.errors import InputError

    shown = []
    monkeypatch.setattr(comfy_services.NodeFeedback, "_show", lambda self: shown.append(self.text))
    path = build_tiny_model(tmp_path / "thinking", "dense", thinking=True)
    bundle = load_model(str(path), [], dtype="fp32", attention="sdpa", device="cpu")
    image = torch.rand(1, 64, 64, 3)
    with pytest.raises(InputError, match="^max_new_tokens:"):
        Qwen3VLRunTask().run(bundle, "points", "cat", "Greedy", 6, image=image)
    assert shown and "[thinking]" in shown[-1]
