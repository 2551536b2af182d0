"""Grounding nodes: the tiny real Qwen3-VL (random text: structure only), the parser node, the workflow file."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from qwen3vl_pack import NODE_CLASS_MAPPINGS
from qwen3vl_pack.loaders import engine
from qwen3vl_pack.nodes.grounding import Qwen3VLGrounding, Qwen3VLParseGrounding
from qwen3vl_pack.utils.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def _batch(n: int, h: int = 64, w: int = 96) -> torch.Tensor:
    rng = np.random.default_rng(n)
    return torch.from_numpy(rng.integers(0, 256, (n, h, w, 3)).astype(np.float32) / 255.0)


@pytest.fixture()
def spy(monkeypatch):
    """Record every batch the engine builds (conversations in, processor tensors out)."""
    calls = []
    real = engine.prepare_inputs

    def record(processor, conversations, *args, **kwargs):
        inputs, counts = real(processor, conversations, *args, **kwargs)
        calls.append((conversations, inputs))
        return inputs, counts

    monkeypatch.setattr(engine, "prepare_inputs", record)
    return calls


def test_grounding_node_batch_is_one_generate_with_one_conversation_per_image(dense, spy):
    image = _batch(3)
    bboxes, mask, preview, report, text = Qwen3VLGrounding().ground(dense, image, "cat, dog", "boxes", 12,
                                                                    "Greedy")
    assert len(spy) == 1
    conversations, inputs = spy[0]
    assert len(conversations) == 3 and inputs["input_ids"].shape[0] == 3
    assert inputs["image_grid_thw"].shape == (3, 3)  # one image per conversation
    prompts = [c[-1]["content"][-1]["text"] for c in conversations]
    assert prompts == ['Locate every instance that belongs to the following categories: "cat, dog". '
                       "Report bbox coordinates in JSON format."] * 3
    assert isinstance(bboxes, list) and len(bboxes) == 3 and all(isinstance(b, list) for b in bboxes)
    assert all(len(box) == 4 for per_image in bboxes for box in per_image)
    assert mask.shape == (3, 64, 96) and mask.dtype == torch.float32
    assert float(mask.min()) >= 0.0 and float(mask.max()) <= 1.0
    assert preview.shape == image.shape and preview.dtype == torch.float32
    parsed = json.loads(report)
    assert [r["image"] for r in parsed] == [0, 1, 2] and all((r["width"], r["height"]) == (96, 64) for r in parsed)
    assert isinstance(text, str) and [f"=== image {i} ===" in text for i in (1, 2, 3)] == [True] * 3
    # The parser node reads the grounding node's text back to the same outputs.
    again = Qwen3VLParseGrounding().parse(text, image, "qwen3")
    assert again[0] == bboxes and torch.equal(again[1], mask) and torch.equal(again[2], preview)
    assert again[3] == report


def test_grounding_node_points_single_image_and_greedy_repeats(dense, spy):
    image = _batch(1)
    first = Qwen3VLGrounding().ground(dense, image, "the red car", "points", 10, "Greedy", max_visual_tokens=64)
    second = Qwen3VLGrounding().ground(dense, image, "the red car", "points", 10, "Greedy", max_visual_tokens=64)
    assert "point_2d" in spy[0][0][0][-1]["content"][-1]["text"]
    assert first[4] == second[4] and "=== image" not in first[4]  # greedy: same answer, no section header
    assert len(first[0]) == 1 and first[1].shape == (1, 64, 96) and first[2].shape == (1, 64, 96, 3)


@pytest.mark.parametrize("kwargs, name", [({"target": "  "}, "target"), ({"index": "x"}, "index"),
                                          ({"mode": "masks"}, "mode"), ({"preset": "Fast"}, "preset")])
def test_grounding_node_refuses_bad_inputs_before_generating(dense, spy, kwargs, name):
    args = dict(model=dense, image=_batch(1), target="cat", mode="boxes", max_new_tokens=8, preset="Greedy")
    args.update(kwargs)
    with pytest.raises(InputError, match=f"^{name}:"):
        Qwen3VLGrounding().ground(**args)
    assert spy == []


def test_parse_node_on_given_text():
    image = torch.full((1, 500, 1000, 3), 0.5)
    text = ('Here you go:\n```json\n[{"bbox_2d": [100, 200, 300, 400], "label": "cat"},\n'
            ' {"bbox_2d": [500, 100, 500, 500], "label": "cat"},\n'
            ' {"bbox_2d": [500, 100, 1000, 500], "label": "dog"},\n {"bbox_2d": [0, 0, 1')
    bboxes, mask, preview, report = Qwen3VLParseGrounding().parse(text, image, "qwen3")
    assert bboxes == [[[100.0, 100.0, 300.0, 200.0], [500.0, 50.0, 1000.0, 250.0]]]
    assert mask.shape == (1, 500, 1000) and float(mask.sum()) == 100 * 200 + 500 * 200
    assert preview.shape == image.shape
    info = json.loads(report)[0]
    assert (info["dropped_zero_area"], info["dropped_incomplete"], info["dropped_invalid"]) == (1, 1, 0)
    assert [d["label"] for d in info["detections"]] == ["cat", "dog"]
    only_dog = Qwen3VLParseGrounding().parse(text, image, "qwen3", label_filter="DOG")
    assert only_dog[0] == [[[500.0, 50.0, 1000.0, 250.0]]]
    second = Qwen3VLParseGrounding().parse(text, image, "qwen3", index="1")
    assert second[0] == only_dog[0]
    assert json.loads(second[3])[0]["detections"][0]["index"] == 1


def test_parse_node_no_json_batch_broadcast_and_mismatch(caplog):
    image = torch.rand(3, 40, 50, 3)
    with caplog.at_level(logging.WARNING):
        bboxes, mask, preview, report = Qwen3VLParseGrounding().parse("No objects of that kind here.", image, "qwen3")
    assert bboxes == [[], [], []] and float(mask.sum()) == 0.0 and torch.equal(preview, image)
    assert [r["found_json"] for r in json.loads(report)] == [False] * 3 and "no JSON" in caplog.text
    one = '{"point_2d": [500, 500], "label": "x"}'
    _, mask, _, report = Qwen3VLParseGrounding().parse(one, image, "qwen3")
    assert [len(r["detections"]) for r in json.loads(report)] == [1, 1, 1]
    assert torch.equal(mask[0], mask[2]) and mask[1, 20, 25] == 1.0
    two = f"=== image 1 ===\n{one}\n\n=== image 2 ===\n[]"
    with pytest.raises(InputError, match="^text: has answers for images \\[1, 2\\]"):
        Qwen3VLParseGrounding().parse(two, image, "qwen3")


def _widget_count(cls) -> int:
    """Widget inputs of a node in INPUT_TYPES order (+1 for a seed's control value), as the frontend saves them."""
    count = 0
    for section in ("required", "optional"):
        for name, spec in cls.INPUT_TYPES().get(section, {}).items():
            kind = spec[0]
            if isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN"):
                count += 2 if name == "seed" else 1
    return count


def test_grounding_workflow_matches_the_nodes():
    wf = json.loads((ROOT / "workflows" / "grounding.json").read_text(encoding="utf-8"))
    assert wf["version"] == 0.4 and {"nodes", "links", "last_node_id", "last_link_id", "groups", "config",
                                      "extra"} <= set(wf)
    nodes = {n["id"]: n for n in wf["nodes"]}
    types = [n["type"] for n in wf["nodes"]]
    assert {"LoadImage", "Qwen3VL_ModelLoader", "Qwen3VL_Grounding", "MaskToImage", "PreviewImage", "Note"} <= set(types)
    for node in wf["nodes"]:
        if node["type"] in NODE_CLASS_MAPPINGS:
            count = _widget_count(NODE_CLASS_MAPPINGS[node["type"]])
            appended = "thinking" in NODE_CLASS_MAPPINGS[node["type"]].INPUT_TYPES().get("optional", {})
            # saved before the thinking switch was appended (issue 18): the frontend leaves it at its default
            assert len(node["widgets_values"]) in ((count, count - 1) if appended else (count,)), node["type"]
    loader = next(n for n in wf["nodes"] if n["type"] == "Qwen3VL_ModelLoader")
    assert loader["widgets_values"][0] == "Qwen3-VL-2B-Instruct"
    note = next(n for n in wf["nodes"] if n["type"] == "Note")
    assert "models/LLM" in note["widgets_values"][0]
    assert max(nodes) == wf["last_node_id"] and max(link[0] for link in wf["links"]) == wf["last_link_id"]
    for link_id, src, src_slot, dst, dst_slot, kind in wf["links"]:
        assert nodes[src]["outputs"][src_slot]["type"] == kind and link_id in nodes[src]["outputs"][src_slot]["links"]
        assert nodes[dst]["inputs"][dst_slot]["link"] == link_id
        if nodes[src]["type"] == "Qwen3VL_Grounding":
            assert NODE_CLASS_MAPPINGS["Qwen3VL_Grounding"].RETURN_TYPES[src_slot] == kind
