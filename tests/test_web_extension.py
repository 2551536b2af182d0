"""The pack's frontend extension (web/js): the loaders mark a saved model / mmproj / LoRA name that this machine's
list lacks (issue 21). Its logic runs here in Node.js on stand-in nodes; the real frontends run it in
tests/test_comfyui_frontend.py (real-ComfyUI tier)."""

from __future__ import annotations

import inspect
import json
import os
import posixpath
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from qwen3vl_pack import NODE_CLASS_MAPPINGS, WEB_DIRECTORY

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / WEB_DIRECTORY
LISTS_JS = WEB / "js" / "qwen3vl_widgets.js"
NODE = shutil.which("node") or shutil.which("nodejs")


def _js_lists() -> dict[str, list[list[str]]]:
    """LISTS from qwen3vl_widgets.js, read by Node (the file is the one the frontend imports)."""
    return _node(f"import {{ LISTS }} from {json.dumps(LISTS_JS.as_uri())};\n"
                 "process.stdout.write(JSON.stringify(LISTS));")


def _node(script: str):
    if NODE is None:
        if os.environ.get("CI"):
            pytest.fail("CI has Node.js on this machine: the web extension's tests must run there")
        pytest.skip("no node (Node.js) on PATH: the web extension's logic runs in Node")
    out = subprocess.run([NODE, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_every_js_file_is_served_and_imports_the_frontend_app_from_its_real_place():
    """ComfyUI serves WEB_DIRECTORY at /extensions/<pack>/ and imports every .js there; a relative import must
    resolve to the frontend's /scripts/app.js from that URL (one ../ too few is a 404 and no extension)."""
    files = sorted(WEB.rglob("*.js"))
    assert [f.name for f in files] == ["qwen3vl.js", "qwen3vl_widgets.js"]
    for f in files:
        url = "/extensions/pack/" + f.relative_to(WEB).as_posix()
        for target in re.findall(r'from\s+"([^"]+)"', f.read_text(encoding="utf-8")):
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(url), target))
            if target.endswith("app.js"):
                assert resolved == "/scripts/app.js", (f.name, target)
            else:
                assert resolved.startswith("/extensions/pack/") and (WEB / resolved[len("/extensions/pack/"):]).is_file()


def test_lists_cover_every_loader_whose_list_a_path_replaces():
    """Every node that accepts a name its list lacks (VALIDATE_INPUTS on a list input) is in LISTS, with the path
    input that replaces the list, and nothing else is."""
    expected = {}
    for node_id, cls in NODE_CLASS_MAPPINGS.items():
        if not hasattr(cls, "VALIDATE_INPUTS"):
            continue
        spec = cls.INPUT_TYPES()
        accepted = inspect.signature(cls.VALIDATE_INPUTS).parameters  # inputs ComfyUI then leaves unchecked
        lists = [name for name, entry in spec["required"].items() if isinstance(entry[0], list) and name in accepted]
        expected[node_id] = sorted(lists)
        for name in lists:
            assert f"{name}_path" in spec.get("optional", {}), (node_id, name)
    got = _js_lists()
    assert {k: sorted(r[0] for r in v) for k, v in got.items()} == expected
    assert all(r[1] == f"{r[0]}_path" for v in got.values() for r in v)


SCENARIOS = r"""
import { markMissing, missingNames, MARK } from %s;
const combo = (name, value, values, label) => ({ name, value, label, options: { values } });
const text = (name, value) => ({ name, value, label: name, options: {} });
const loader = (value, values, path = "", label = "model") =>
  ({ type: "Qwen3VL_ModelLoader", comfyClass: "Qwen3VL_ModelLoader",
     widgets: [combo("model", value, values, label), combo("dtype", "auto", ["auto"], "dtype"), text("model_path", path)] });
const out = {};
const empty = ["(no Qwen3-VL folder found in models/LLM)"];
let n = loader("Qwen3-VL-2B-Instruct", empty);
out.missing_changed = markMissing(n);
out.missing_label = n.widgets[0].label;
out.missing_value = n.widgets[0].value;
out.missing_names = missingNames(n);
out.again_changed = markMissing(n);
n.widgets[2].value = "  /models/Qwen3-VL-2B-Instruct ";
out.path_changed = markMissing(n);
out.path_label = n.widgets[0].label;
n.widgets[2].value = "";
markMissing(n);
n.widgets[0].options.values = ["Qwen3-VL-2B-Instruct", "Qwen3-VL-8B-Instruct"];  // the folder added, R pressed
out.refreshed_changed = markMissing(n);
out.refreshed_label = n.widgets[0].label;
n = loader("Qwen3-VL-2B-Instruct", ["Qwen3-VL-2B-Instruct"]);
out.listed_changed = markMissing(n);
out.listed_label = n.widgets[0].label;
n = loader("gone", ["other"], "", "my model");  // a user's own label comes back
markMissing(n); out.renamed_marked = n.widgets[0].label;
n.widgets[0].value = "other"; markMissing(n); out.renamed_back = n.widgets[0].label;
n = loader("gone", () => ["other"]);  // a list given as a function
out.function_list = missingNames(n).map(m => m.input);
const gguf = { type: "Qwen3VL_GGUFModel", widgets: [combo("model", "a.gguf", ["b.gguf"], "model"),
  combo("mmproj", "mmproj-a.gguf", ["mmproj-a.gguf"], "mmproj"), text("model_path", ""), text("mmproj_path", "")] };
markMissing(gguf); out.gguf = gguf.widgets.map(w => w.label);
const lora = { type: "Qwen3VL_LoraLoader", widgets: [combo("lora", "mine", ["(no LoRA adapter folder found)"], "lora"),
  { name: "strength", value: 1, label: "strength", options: {} }, text("lora_path", "")] };
out.lora_where = missingNames(lora).map(m => m.where);
const other = { type: "CheckpointLoaderSimple", widgets: [combo("ckpt_name", "x", ["y"], "ckpt_name")] };
out.other_changed = markMissing(other); out.other_label = other.widgets[0].label;
out.mark = MARK;
process.stdout.write(JSON.stringify(out));
"""


def test_a_missing_name_is_marked_and_never_changed():
    got = _node(SCENARIOS % json.dumps(LISTS_JS.as_uri()))
    marked = got["mark"] + "model"
    assert got["missing_changed"] is True and got["missing_label"] == marked
    assert got["missing_value"] == "Qwen3-VL-2B-Instruct"  # the saved name stays (sent and saved as it was)
    assert got["missing_names"] == [{"input": "model", "value": "Qwen3-VL-2B-Instruct", "where": "models/LLM"}]
    assert got["again_changed"] is False  # drawn every frame: no redraw loop
    assert got["path_changed"] is True and got["path_label"] == "model"  # model_path replaces the list
    assert got["refreshed_changed"] is True and got["refreshed_label"] == "model"
    assert got["listed_changed"] is False and got["listed_label"] == "model"
    assert got["renamed_marked"] == marked and got["renamed_back"] == "my model"
    assert got["function_list"] == ["model"]
    assert got["gguf"] == [got["mark"] + "model", "mmproj", "model_path", "mmproj_path"]
    assert got["lora_where"] == ["models/loras or models/LLM"]
    assert got["other_changed"] is False and got["other_label"] == "ckpt_name"  # core nodes are left alone


def test_task_hides_target_exactly_for_the_tasks_whose_prompt_never_reads_it():
    from qwen3vl_pack.utils.task_prompts import TASKS, build_task_prompt

    got = _node(f"import {{ READS_TARGET, TASK_WIDGETS }} from {json.dumps(LISTS_JS.as_uri())};\n"
                "process.stdout.write(JSON.stringify({READS_TARGET, TASK_WIDGETS}));")
    assert sorted(got["READS_TARGET"]) == sorted(name for name, spec in TASKS.items() if spec.reads_target)
    for name, spec in TASKS.items():  # the prompt itself: target changes it exactly when the task reads it
        assert (build_task_prompt(name, "zebra") != build_task_prompt(name, "zebra crossing")) == spec.reads_target, name
    spec = NODE_CLASS_MAPPINGS["Qwen3VL_RunTask"].INPUT_TYPES()["required"]
    rule = got["TASK_WIDGETS"]["Qwen3VL_RunTask"]
    assert spec[rule["choice"]][0] == list(TASKS) and spec[rule["widget"]][0] == "STRING"


TASK_SCENARIOS = r"""
import { showTaskWidgets } from %s;
const w = (name, value) => ({ name, value, computeSize: undefined });
const node = { type: "Qwen3VL_RunTask", size: [360, 200], widgets: [w("task", "ocr"), w("target", "car"),
  w("preset", "Greedy")], computeSize() { return [210, this.widgets.filter(x => !x.hidden).length * 24 + 100]; },
  setSize(s) { this.size = s; } };
const out = {};
out.ocr_changed = showTaskWidgets(node); out.ocr_hidden = !!node.widgets[1].hidden;
out.ocr_row = node.widgets[1].computeSize && node.widgets[1].computeSize()[1];
out.again = showTaskWidgets(node);
node.widgets[0].value = "points";
node.size = [360, 120];  // smaller than it needs with target shown
out.points_changed = showTaskWidgets(node); out.points_hidden = !!node.widgets[1].hidden;
out.points_size = node.size; out.points_own_size = node.widgets[1].computeSize === undefined;
out.value = node.widgets[1].value;
node.widgets[0].value = "image prompt"; showTaskWidgets(node); out.image_prompt_hidden = !!node.widgets[1].hidden;
node.widgets[0].value = "video events"; showTaskWidgets(node); out.video_hidden = !!node.widgets[1].hidden;
out.big_stays = (() => { node.size = [360, 500]; node.widgets[0].value = "gui click"; showTaskWidgets(node);
  return node.size; })();
const other = { type: "Qwen3VL_Generate", widgets: [w("task", "ocr"), w("target", "x")] };
out.other = showTaskWidgets(other) || !!other.widgets[1].hidden;
process.stdout.write(JSON.stringify(out));
"""


def test_target_hides_and_comes_back_with_its_value_and_room():
    got = _node(TASK_SCENARIOS % json.dumps(LISTS_JS.as_uri()))
    assert got["ocr_changed"] is True and got["ocr_hidden"] is True and got["ocr_row"] == -4
    assert got["again"] is False  # runs every frame: nothing to do when nothing changed
    assert got["points_changed"] is True and got["points_hidden"] is False and got["points_own_size"] is True
    assert got["points_size"] == [360, 172]  # grown to fit the widget shown again (3 rows x 24 + 100)
    assert got["value"] == "car"  # hidden or not, the value is kept, saved and sent
    assert got["image_prompt_hidden"] is False and got["video_hidden"] is True
    assert got["big_stays"] == [360, 500]  # never shrunk
    assert got["other"] is False
