"""What ComfyUI's frontends need to load saved workflows value for value, and the old Task layout's migration."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from qwen3vl_pack import NODE_CLASS_MAPPINGS
from qwen3vl_pack.tests.workflow_check import check_workflow, core_specs, pack_specs, widget_inputs

SPECS = {**core_specs(), **pack_specs(NODE_CLASS_MAPPINGS)}
ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("layout_workflows", ROOT / "scripts" / "layout_workflows.py")
layout_workflows = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(layout_workflows)
OLD_TASK_WIDGETS, migrate_task = layout_workflows.OLD_TASK_WIDGETS, layout_workflows.migrate_task


def _widgets(node_id: str) -> list[tuple[str, str, dict]]:
    return widget_inputs(SPECS[node_id])


@pytest.mark.parametrize("node_id", sorted(NODE_CLASS_MAPPINGS))
def test_every_seed_widget_declares_control_after_generate(node_id):
    """Frontends 1.49 and 1.58 add the control widget (and read its saved value) only when the input declares it;
    1.27 also added it for any INT called seed. Undeclared, every saved value after the seed shifts by one."""
    for section in ("required", "optional"):
        for name, entry in NODE_CLASS_MAPPINGS[node_id].INPUT_TYPES().get(section, {}).items():
            if entry[0] == "INT" and "seed" in name:
                assert entry[1].get("control_after_generate") is True, f"{node_id}.{name}"


@pytest.mark.parametrize("node_id", ["Qwen3VL_Generate", "Qwen3VL_Grounding", "Qwen3VL_BatchCaption",
                                     "Qwen3VL_RunTask"])
def test_no_run_node_shows_more_than_eight_widgets(node_id):
    """Task (issue 21) at most 8; Batch Caption's one widget over that budget is the Qwen3.5 thinking switch,
    appended last (issue 18) so that saved workflows keep every value in place."""
    shown = [w[0] for w in _widgets(node_id) if w[1] not in ("CONTROL", "UPLOAD")]
    assert shown[-1] == "thinking"
    assert len(shown) <= (9 if node_id == "Qwen3VL_BatchCaption" else 8), shown


def test_old_task_workflow_migrates_by_name_and_keeps_every_value():
    wf = json.loads((ROOT / "workflows" / "points_to_sam2.json").read_text())
    task = next(n for n in wf["nodes"] if n["type"] == "Qwen3VL_RunTask")
    links = {i["name"]: i["link"] for i in task["inputs"]}
    old_values = ["3d boxes", "car", "German", "SDXL tags long", 75.0, 300, "Greedy", 0, "fixed", 640]
    task.update(type="Qwen3VL_Task", widgets_values=list(old_values),
                inputs=[{"name": n, "type": t, "link": links[n]} for n, t in
                        [("model", "QWEN3VL_MODEL"), ("image", "IMAGE"), ("video", "IMAGE"), ("video_fps", "FLOAT")]])
    for link in wf["links"]:
        if link[3] == task["id"]:
            link[4] = [i["link"] for i in task["inputs"]].index(link[0])
    assert check_workflow(wf, SPECS) == []  # the old layout is still a valid workflow (deprecated node)
    assert migrate_task(wf) == 1 and check_workflow(wf, SPECS) == []
    values = dict(zip(OLD_TASK_WIDGETS, old_values, strict=True))
    assert task["widgets_values"] == [values[k] for k in ("task", "target", "preset", "max_new_tokens",
                                                          "max_visual_tokens")]
    options = next(n for n in wf["nodes"] if n["type"] == "Qwen3VL_TaskOptions")
    assert options["widgets_values"] == ["German", "SDXL tags long", 75.0]
    assert {i["name"]: i["link"] for i in task["inputs"]}["model"] == links["model"]


def test_bbox_becomes_core_bounding_boxes_per_image():
    from qwen3vl_pack.nodes.interop import Qwen3VLBBoxToBoundingBox
    from qwen3vl_pack.utils.errors import InputError

    (out,) = Qwen3VLBBoxToBoundingBox().convert([[[10.4, 20.6, 110.2, 60.0], [50, 50, 40, 40]], []])
    assert out == [[{"x": 10, "y": 20, "width": 101, "height": 40}, {"x": 40, "y": 40, "width": 10, "height": 10}],
                   []]
    assert Qwen3VLBBoxToBoundingBox.RETURN_TYPES == ("BOUNDING_BOX",)
    for bad in ("boxes", [[[1, 2, 3]]], [[[0, 0, float("nan"), 4]]], [5]):
        with pytest.raises(InputError, match="^bboxes:"):
            Qwen3VLBBoxToBoundingBox().convert(bad)


def test_points_to_sam3_feeds_task_points_to_core_sam3_detect():
    wf = json.loads((ROOT / "workflows" / "points_to_sam3.json").read_text())
    nodes = {n["id"]: n for n in wf["nodes"]}
    sam3 = next(n for n in wf["nodes"] if n["type"] == "SAM3_Detect")
    fed = {sam3["inputs"][lk[4]]["name"]: (nodes[lk[1]]["type"], nodes[lk[1]]["outputs"][lk[2]]["name"])
           for lk in wf["links"] if lk[3] == sam3["id"]}
    assert fed == {"positive_coords": ("Qwen3VL_RunTask", "points"), "image": ("LoadImage", "IMAGE"),
                   "model": ("CheckpointLoaderSimple", "MODEL")}
    task = next(n for n in wf["nodes"] if n["type"] == "Qwen3VL_RunTask")
    assert task["widgets_values"][:2] == ["points", "house, sun"] or task["widgets_values"][0] == "points"
    note = next(n for n in wf["nodes"] if n["type"] == "Note")["widgets_values"][0]
    assert "0.33" in note and "0.3.64" in note and "models/LLM" in note


@pytest.mark.parametrize("path", sorted((ROOT / "workflows").glob("*.json")), ids=lambda p: p.name)
def test_workflow_layout_has_no_overlaps_fits_the_view_and_is_stable(path):
    """Saved node sizes come from the frontends (scripts/frontend_nodes.py --sizes-out); here: nothing overlaps, the
    saved view shows every node inside 1280x800 below the menu and right of the side bar, and laying the file out
    again changes nothing (the lead can re-run the script on merged workflows)."""
    import copy

    wf = json.loads(path.read_text(encoding="utf-8"))
    assert layout_workflows.overlaps(wf) == []
    ds = wf["extra"]["ds"]
    assert ds["scale"] >= layout_workflows.MIN_SCALE  # below 8/14 the frontends draw no text on nodes
    margin = layout_workflows.MARGIN
    for node in wf["nodes"]:
        x0 = (node["pos"][0] + ds["offset"][0]) * ds["scale"]
        y0 = (node["pos"][1] - layout_workflows.TITLE + ds["offset"][1]) * ds["scale"]
        x1, y1 = x0 + node["size"][0] * ds["scale"], y0 + (node["size"][1] + layout_workflows.TITLE) * ds["scale"]
        assert x0 >= margin["left"] - 1 and y0 >= margin["top"] - 1, node["id"]
        assert x1 <= 1280 - margin["right"] + 1 and y1 <= 800 - margin["bottom"] + 1, node["id"]
    again = copy.deepcopy(wf)
    layout_workflows.layout(again, {})
    assert [(n["pos"], n["size"]) for n in again["nodes"]] == [(n["pos"], n["size"]) for n in wf["nodes"]]
    assert again["extra"]["ds"] == wf["extra"]["ds"]
