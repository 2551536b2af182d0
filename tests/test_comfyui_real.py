"""Optional tier: every workflow in workflows/ runs in a real ComfyUI on the tiny model.

Runs only when COMFYUI_DIR points at a ComfyUI checkout (COMFYUI_PYTHON: a Python that can run it;
COMFYUI_HARNESS: the harness folder, default ../shared/tools/comfyui_harness). Skipped otherwise,
with the reason printed by ``pytest -ra``.

Every workflow runs as a user opens it on a machine where its model is not in the list: models/LLM is an
EMPTY folder and the tiny model is given only through the loader's model_path (the workflows name
``Qwen3-VL-2B-Instruct``, which ComfyUI's own list check would reject without the loader's VALIDATE_INPUTS).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMFY = os.environ.get("COMFYUI_DIR", "")
HARNESS = Path(os.environ.get("COMFYUI_HARNESS", ROOT.parent / "shared" / "tools" / "comfyui_harness"))
PYTHON = os.environ.get("COMFYUI_PYTHON", sys.executable)

if not COMFY:
    pytest.skip("COMFYUI_DIR is not set: the real-ComfyUI tier needs a ComfyUI checkout", allow_module_level=True)
if not (HARNESS / "run_workflow.py").is_file():
    pytest.skip(f"no ComfyUI harness at {HARNESS} (set COMFYUI_HARNESS)", allow_module_level=True)

WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))
INPUTS = [ROOT / "assets" / "sample.png", ROOT / "assets" / "qwen3vl_clip.mp4"]
LOADER = "Qwen3VL_ModelLoader"
SERVER = "Qwen3VL_ServerModel"
GGUF = "Qwen3VL_GGUFModel"
LLAMA_BUILD = ROOT / ".llama-build"  # scripts/llama_server.sh all
GGUF_FILES = {"llama_server": LLAMA_BUILD / "bin" / "llama-server",
              "model_path": LLAMA_BUILD / "tiny" / "qwen3vl-tiny-Q8_0.gguf",
              "mmproj_path": LLAMA_BUILD / "tiny" / "mmproj-qwen3vl-tiny-f16.gguf"}
VLLM_URL = os.environ.get("QWEN3VL_VLLM_URL", "")
TASK_TOKENS, TINY_TOKENS = 5, 256  # Qwen3VL_Task's max_new_tokens widget (0 = task default) and the tier's value


@pytest.fixture(scope="module")
def comfy_env(tmp_path_factory):
    """An empty models/LLM registered for ComfyUI, and the tiny model in a folder outside every model path."""
    base = tmp_path_factory.mktemp("comfy_models")
    (base / "LLM").mkdir()  # registered, and empty
    model_dir = base / "elsewhere" / "my-tiny-qwen3vl"
    build = subprocess.run([PYTHON, str(ROOT / "tests" / "tiny_model.py"), str(model_dir), "dense"],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    yaml = base / "extra_model_paths.yaml"
    yaml.write_text(f"qwen3vl_tests:\n  base_path: {base}\n  LLM: LLM\n", encoding="utf-8")
    images = base / "caption_images"
    images.mkdir()
    for i in range(3):
        shutil.copy(INPUTS[0], images / f"img_{i}.png")
    return {"yaml": yaml, "images": images, "runs": base / "runs", "model": model_dir}


def _harness(env: dict, *args: str) -> subprocess.CompletedProcess:
    cmd = [PYTHON, str(HARNESS / "run_workflow.py"), *args, "--custom-node", str(ROOT), "--link-mode", "extra-paths",
           "--run-root", str(env["runs"]), "--disable-api-nodes", "--isolate", "--timeout", "300",
           f"--extra-arg=--extra-model-paths-config {env['yaml']}"]
    for f in INPUTS:
        cmd += ["--input", str(f)]
    os_env = dict(os.environ, COMFYUI_DIR=COMFY, COMFYUI_PYTHON=PYTHON, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=os_env)


def _gguf_inputs() -> dict:
    from qwen3vl_pack.nodes.gguf import Qwen3VLGGUFModel

    return Qwen3VLGGUFModel.INPUT_TYPES()


GGUF_INPUTS = _gguf_inputs()


def _widget_index(name: str) -> int:
    from qwen3vl_pack.nodes.loader import Qwen3VLModelLoader

    spec = Qwen3VLModelLoader.INPUT_TYPES()
    return [*spec["required"], *spec.get("optional", {})].index(name)


def _prepare(workflow: Path, env: dict, dst: Path) -> Path:
    wf = json.loads(workflow.read_text(encoding="utf-8"))
    loaders = [node for node in wf["nodes"] if node["type"] == LOADER]
    servers = [node for node in wf["nodes"] if node["type"] == SERVER]
    ggufs = [node for node in wf["nodes"] if node["type"] == GGUF]
    assert loaders or servers or ggufs, f"{workflow.name} has no {LOADER}, {SERVER} or {GGUF}"
    if ggufs and not all(p.is_file() for p in GGUF_FILES.values()):
        pytest.skip(f"{workflow.name} needs llama-server and the tiny GGUF: run scripts/llama_server.sh all")
    for node in ggufs:  # the files only through the *_path inputs (models/LLM is empty here)
        names = [*GGUF_INPUTS["required"], *GGUF_INPUTS["optional"]]
        values = dict(GGUF_FILES, context=4096, gpu_layers=0, extra_args="--no-repack")
        for name, value in values.items():
            node["widgets_values"][names.index(name)] = str(value) if isinstance(value, Path) else value
    if servers and not VLLM_URL:
        pytest.skip(f"{workflow.name} needs a served model: set QWEN3VL_VLLM_URL (scripts/with_vllm.sh)")
    for node in servers:
        node["widgets_values"][0] = VLLM_URL  # base_url
    for node in loaders:
        assert node["widgets_values"][_widget_index("model")] == "Qwen3-VL-2B-Instruct"  # not in the empty list
        node["widgets_values"][_widget_index("model_path")] = str(env["model"])
    for node in wf["nodes"]:
        if node["type"] == "Qwen3VL_LoadImageFolder":
            node["widgets_values"][0] = str(env["images"])
        if node["type"] == "Qwen3VL_Task":  # random text to the task default (up to 4096 tokens) only costs time
            node["widgets_values"][TASK_TOKENS] = TINY_TOKENS
    dst.write_text(json.dumps(wf), encoding="utf-8")
    return dst


def test_models_folder_is_empty_in_comfyui(comfy_env):
    out = _harness(comfy_env, "--object-info-only", LOADER)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    info = json.loads(out.stdout[out.stdout.index("{"):])
    assert info[LOADER]["input"]["required"]["model"][0] == ["(no Qwen3-VL folder found in models/LLM)"]


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_runs_in_real_comfyui_with_model_path_only(workflow, comfy_env, tmp_path):
    wf = _prepare(workflow, comfy_env, tmp_path / workflow.name)
    out = _harness(comfy_env, str(wf))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads(out.stdout[out.stdout.index("{"):])
    assert result["status"] == "success" and result["outputs"]


def test_live_text_and_progress_reach_a_websocket_client(comfy_env):
    """A 256-token answer in describe_image: the Generate node's binary TEXT events (send_progress_text) and its
    progress events reach the client that queued the prompt, at most ~10 per second each plus the first and last.
    tests/comfy_ws.py decodes the binary frames (the harness's --show-events only counts their bytes)."""
    cmd = [PYTHON, str(ROOT / "tests" / "comfy_ws.py"), str(ROOT / "workflows" / "describe_image.json"),
           "--custom-node", str(ROOT), "--input", str(INPUTS[0]), "--run-root", str(comfy_env["runs"]),
           "--set", "3.max_new_tokens=256", "--set", '3.preset="Greedy"',
           "--set", f"1.model_path={json.dumps(str(comfy_env['model']))}",  # models/LLM is empty here
           f"--extra-arg=--extra-model-paths-config {comfy_env['yaml']}"]
    env = dict(os.environ, COMFYUI_DIR=COMFY, COMFYUI_PYTHON=PYTHON, COMFYUI_HARNESS=str(HARNESS),
               PYTHONDONTWRITEBYTECODE="1")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    run = json.loads(out.stdout)["rounds"][0]
    assert run["status"] == "execution_success", run
    generate, answer, info = run["nodes"]["3"], run["outputs"]["4"]["text"][0], run["outputs"]["5"]["text"][0]
    tokens = int(info.split("generated tokens: ")[1].split("\n")[0])
    texts, progress = generate["texts"], generate["progress"]
    assert texts and texts[-1] == answer  # the node ends showing the answer
    assert progress[0] == 1 and progress[-1] == tokens and progress == sorted(progress)
    assert len(texts) <= run["seconds"] / 0.1 + 2 and len(progress) <= run["seconds"] / 0.1 + 2
    print(f"\n{tokens}-token answer in real ComfyUI, {run['seconds']:.2f} s: {len(progress)} progress events, "
          f"{len(texts)} text events")
