"""Every workflows/*.json uses registered nodes, valid widget values and matching links."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from qwen3vl_pack import NODE_CLASS_MAPPINGS
from qwen3vl_pack.tests.workflow_check import check_workflow, core_specs, pack_specs

WORKFLOWS = sorted((Path(__file__).resolve().parents[1] / "workflows").glob("*.json"))
SPECS = {**core_specs(), **pack_specs(NODE_CLASS_MAPPINGS)}


def _load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_there_are_workflows():
    assert len(WORKFLOWS) >= 3


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_is_valid(path):
    wf = _load(path)
    assert wf.get("version") == 0.4 and "last_node_id" in wf and "last_link_id" in wf
    assert check_workflow(wf, SPECS) == []
    types = {n["type"] for n in wf["nodes"]}
    assert any(t.startswith("Qwen3VL_") for t in types)


def _first(wf, node_type):
    return next(n for n in wf["nodes"] if n["type"] == node_type)


@pytest.mark.parametrize("breakage,expected", [
    (lambda wf: _first(wf, "Qwen3VL_Generate").__setitem__("type", "Qwen3VL_Nope"), "unknown node type"),
    (lambda wf: _first(wf, "Qwen3VL_Generate")["widgets_values"].__setitem__(1, "Turbo"), "widget preset"),
    (lambda wf: _first(wf, "Qwen3VL_Generate")["widgets_values"].__setitem__(2, 0), "widget max_new_tokens"),
    (lambda wf: _first(wf, "Qwen3VL_Generate")["widgets_values"].__delitem__(slice(-2, None)), "widget values for"),
    (lambda wf: _first(wf, "Qwen3VL_ModelLoader")["widgets_values"].__setitem__(5, "yes"), "widget keep_loaded"),
    (lambda wf: wf["links"][0].__setitem__(2, 5), "has no output"),
    (lambda wf: wf.__setitem__("nodes", [n for n in wf["nodes"] if n["type"] != "Note"]), "no Note node"),
    (lambda wf: [wf["links"].remove(lk) for lk in list(wf["links"]) if lk[5] == "QWEN3VL_MODEL"], "not connected"),
])
def test_checker_catches_broken_workflows(breakage, expected):
    wf = copy.deepcopy(_load(next(p for p in WORKFLOWS if p.name == "describe_image.json")))
    breakage(wf)
    problems = check_workflow(wf, SPECS)
    assert any(expected in p for p in problems), problems


def test_link_type_mismatch_is_caught():
    wf = copy.deepcopy(_load(next(p for p in WORKFLOWS if p.name == "describe_image.json")))
    gen = _first(wf, "Qwen3VL_Generate")
    image_in = next(i for i in gen["inputs"] if i["name"] == "image")
    model_in = next(i for i in gen["inputs"] if i["name"] == "model")
    image_in["link"], model_in["link"] = model_in["link"], image_in["link"]
    for lk in wf["links"]:
        if lk[3] == gen["id"]:
            lk[4] = gen["inputs"].index(image_in if lk[5] == "QWEN3VL_MODEL" else model_in)
    assert any("does not match" in p for p in check_workflow(wf, SPECS))
