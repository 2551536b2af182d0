"""Optional tier: the shipped workflows in ComfyUI's real frontend (headless Chromium), as a user opens them.

Runs when COMFYUI_DIR points at a ComfyUI checkout and COMFYUI_PYTHON has playwright (and /usr/bin/chromium is
there); COMFYUI_FRONTEND_ROOT may name another frontend's static folder (``comfyui_frontend_package/static``).
Skipped otherwise, with the reason printed by ``pytest -ra``.

A loader whose saved model / mmproj / LoRA name is not in this machine's list says so on the widget ("missing
model"), and only then: a listed name, or a path in ``*_path``, shows the plain label. The values the frontend
saves and sends stay the file's (scripts/frontend_nodes.py's round trip).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMFY = os.environ.get("COMFYUI_DIR", "")
PYTHON = os.environ.get("COMFYUI_PYTHON", sys.executable)
FRONTEND = os.environ.get("COMFYUI_FRONTEND_ROOT", "")

if not COMFY:
    pytest.skip("COMFYUI_DIR is not set: the frontend tier needs a ComfyUI checkout", allow_module_level=True)
if subprocess.run([PYTHON, "-c", "import playwright"], capture_output=True).returncode != 0:
    pytest.skip(f"no playwright in COMFYUI_PYTHON ({PYTHON}): pip install playwright there", allow_module_level=True)
if not Path("/usr/bin/chromium").exists():
    pytest.skip("no /usr/bin/chromium (Debian's chromium package)", allow_module_level=True)

from qwen3vl_pack.tests.comfy_ws import ComfyServer  # noqa: E402

MARK = "missing "
LISTED = {"LLM": "Present-Model", "gguf": "present-Q4_K_M.gguf", "mmproj": "mmproj-present-F16.gguf",
          "lora": "listed-lora"}


@pytest.fixture(scope="module")
def frontend(tmp_path_factory):
    """A ComfyUI whose lists hold one model folder, one .gguf pair and one adapter, none of them a name the shipped
    workflows save."""
    base = tmp_path_factory.mktemp("frontend_models")
    (base / "LLM" / LISTED["LLM"]).mkdir(parents=True)
    (base / "LLM" / LISTED["LLM"] / "config.json").write_text("{}", encoding="utf-8")
    for key in ("gguf", "mmproj"):
        (base / "LLM" / LISTED[key]).write_bytes(b"GGUF")
    (base / "loras" / LISTED["lora"]).mkdir(parents=True)
    (base / "loras" / LISTED["lora"] / "adapter_config.json").write_text("{}", encoding="utf-8")
    yaml = base / "extra_model_paths.yaml"
    yaml.write_text(f"qwen3vl_frontend:\n  base_path: {base}\n  LLM: LLM\n  loras: loras\n", encoding="utf-8")
    extra = [f"--extra-model-paths-config={yaml}"] + ([f"--front-end-root={FRONTEND}"] if FRONTEND else [])
    inputs = [str(ROOT / "assets" / n) for n in ("sample.png", "qwen3vl_clip.mp4")]
    with ComfyServer([str(ROOT)], inputs=inputs, extra_args=extra, comfy_dir=COMFY, python=PYTHON) as server:
        yield {"base": server.base, "dir": base}


def _variant(src: str, dst: Path, **values: dict[str, dict[str, str]]) -> Path:
    """A copy of a shipped workflow with some widget values of its loaders changed, by input name."""
    from qwen3vl_pack import NODE_CLASS_MAPPINGS

    wf = json.loads((ROOT / "workflows" / src).read_text(encoding="utf-8"))
    for node in wf["nodes"]:
        for key, value in values.get(node["type"], {}).items():
            spec = NODE_CLASS_MAPPINGS[node["type"]].INPUT_TYPES()
            names = [n for s in ("required", "optional") for n, e in spec.get(s, {}).items()
                     if isinstance(e[0], list) or e[0] in ("INT", "FLOAT", "STRING", "BOOLEAN")]
            node["widgets_values"][names.index(key)] = value
    dst.write_text(json.dumps(wf), encoding="utf-8")
    return dst


def _open(frontend: dict, workflows: list[Path]) -> dict:
    out = subprocess.run([PYTHON, str(ROOT / "scripts" / "frontend_nodes.py"), *map(str, workflows),
                          "--base", frontend["base"]], capture_output=True, text=True, timeout=900)
    assert out.stdout.strip(), out.stderr[-3000:]
    report = json.loads(out.stdout)
    assert report["round_trip"] == 0, report["problems"]  # marked or not, every value is sent and saved as saved
    return report


def _label(report: dict, workflow: str, node: str, name: str) -> str:
    labels = report["labels"].get(workflow, {})
    got = next((v for k, v in labels.items() if k.endswith(" " + node)), {})
    return got.get(name, name)  # frontends that leave label unset show the name


def test_loaders_mark_names_this_machine_lacks_and_only_those(frontend, tmp_path):
    shipped = [ROOT / "workflows" / n for n in ("describe_image.json", "gguf_caption.json", "lora_caption.json")]
    listed = [
        _variant("describe_image.json", tmp_path / "listed_describe.json",
                 Qwen3VL_ModelLoader={"model": LISTED["LLM"]}),
        _variant("gguf_caption.json", tmp_path / "listed_gguf.json",
                 Qwen3VL_GGUFModel={"model": LISTED["gguf"], "mmproj": LISTED["mmproj"]}),
        _variant("lora_caption.json", tmp_path / "listed_lora.json",
                 Qwen3VL_ModelLoader={"model": LISTED["LLM"]}, Qwen3VL_LoraLoader={"lora": LISTED["lora"]}),
        _variant("lora_caption.json", tmp_path / "paths_lora.json",  # paths replace the lists: nothing missing
                 Qwen3VL_ModelLoader={"model_path": "/models/my-qwen3vl"},
                 Qwen3VL_LoraLoader={"lora_path": "/loras/mine"}),
    ]
    report = _open(frontend, shipped + listed)
    assert report["workflows"] == 7
    for wf, node, name in [("describe_image.json", "Qwen3VL_ModelLoader", "model"),
                           ("gguf_caption.json", "Qwen3VL_GGUFModel", "model"),
                           ("gguf_caption.json", "Qwen3VL_GGUFModel", "mmproj"),
                           ("lora_caption.json", "Qwen3VL_ModelLoader", "model"),
                           ("lora_caption.json", "Qwen3VL_LoraLoader", "lora")]:
        assert _label(report, wf, node, name) == MARK + name, (wf, node, report["labels"].get(wf))
    for wf, node, name in [("listed_describe.json", "Qwen3VL_ModelLoader", "model"),
                           ("listed_gguf.json", "Qwen3VL_GGUFModel", "model"),
                           ("listed_gguf.json", "Qwen3VL_GGUFModel", "mmproj"),
                           ("listed_lora.json", "Qwen3VL_ModelLoader", "model"),
                           ("listed_lora.json", "Qwen3VL_LoraLoader", "lora"),
                           ("paths_lora.json", "Qwen3VL_ModelLoader", "model"),
                           ("paths_lora.json", "Qwen3VL_LoraLoader", "lora")]:
        assert _label(report, wf, node, name) == name, (wf, node, report["labels"].get(wf))
    # other widgets keep their own labels
    assert _label(report, "describe_image.json", "Qwen3VL_ModelLoader", "dtype") == "dtype"


def test_task_shows_target_only_for_tasks_that_read_it(frontend):
    """ocr and document html never read target: it is hidden (its value still saved and sent, checked by the round
    trip); points reads it: shown."""
    report = _open(frontend, [ROOT / "workflows" / n for n in ("ocr_document.json", "points_to_sam2.json",
                                                               "video_events.json")])
    hidden = report["hidden_widgets"]
    assert sorted(hidden.get("ocr_document.json", {}).values()) == [["target"], ["target"]], hidden
    assert list(hidden.get("video_events.json", {}).values()) == [["target"]], hidden
    assert not hidden.get("points_to_sam2.json"), hidden
    assert report["too_small"] == 0 and report["overlaps"] == 0
