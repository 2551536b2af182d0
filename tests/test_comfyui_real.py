"""Optional tier: every workflow in workflows/ runs in a real ComfyUI on the tiny model.

Runs only when COMFYUI_DIR points at a ComfyUI checkout (COMFYUI_PYTHON: a Python that can run it;
COMFYUI_HARNESS: the harness folder, default ../shared/tools/comfyui_harness). Skipped otherwise,
with the reason printed by ``pytest -ra``.

Every workflow runs as a user opens it on a machine where its model is not in the list: models/LLM is an
EMPTY folder and the tiny model is given only through the loader's model_path (the workflows name
``Qwen3-VL-2B-Instruct`` or ``Qwen3.5-2B``, which ComfyUI's own list check would reject without the loader's
VALIDATE_INPUTS). The Qwen3.5 workflows (and the main Qwen3-VL ones) run again on a tiny Qwen3.5 (issue 18).
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
LORA = "Qwen3VL_LoraLoader"
GGUF = "Qwen3VL_GGUFModel"
LLAMA_BUILD = ROOT / ".llama-build"  # scripts/llama_server.sh all
GGUF_FILES = {"llama_server": LLAMA_BUILD / "bin" / "llama-server",
              "model_path": LLAMA_BUILD / "tiny" / "qwen3vl-tiny-Q8_0.gguf",
              "mmproj_path": LLAMA_BUILD / "tiny" / "mmproj-qwen3vl-tiny-f16.gguf"}
VLLM_URL = os.environ.get("QWEN3VL_VLLM_URL", "")
TINY_TOKENS = 256  # the tier's max_new_tokens for Task nodes (their 0 = the task default, up to 4096 tokens)
LISTED_NAMES = ("Qwen3-VL-2B-Instruct", "Qwen3.5-2B")  # what the workflows pick: not in the empty list
QWEN35_WORKFLOWS = ("describe_image.json", "grounding.json", "caption_folder.json", "ocr_document.json",
                    "chat_two_turns.json", "qwen35_describe.json")


@pytest.fixture(scope="module")
def comfy_env(tmp_path_factory):
    """An empty models/LLM registered for ComfyUI, and the tiny model in a folder outside every model path."""
    base = tmp_path_factory.mktemp("comfy_models")
    (base / "LLM").mkdir()  # registered, and empty
    model_dir = base / "elsewhere" / "my-tiny-qwen3vl"
    build = subprocess.run([PYTHON, str(ROOT / "tests" / "tiny_model.py"), str(model_dir), "dense"],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    lora_dir = _tiny_lora(base / "elsewhere" / "my-tiny-lora")  # given through lora_path, like the model
    shutil.copytree(lora_dir, base / "loras" / "listed-lora")  # and one in the loras folder, for the list
    qwen35_dir = base / "elsewhere" / "my-tiny-qwen35"
    build = subprocess.run([PYTHON, str(ROOT / "tests" / "tiny_model.py"), str(qwen35_dir), "qwen3_5"],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    yaml = base / "extra_model_paths.yaml"
    yaml.write_text(f"qwen3vl_tests:\n  base_path: {base}\n  LLM: LLM\n  loras: loras\n", encoding="utf-8")
    images = base / "caption_images"
    images.mkdir()
    for i in range(3):
        shutil.copy(INPUTS[0], images / f"img_{i}.png")
    return {"yaml": yaml, "images": images, "runs": base / "runs", "model": model_dir, "lora": lora_dir,
            "qwen35": qwen35_dir}


def _tiny_lora(dst: Path) -> Path:
    """A tiny peft adapter (text + vision targets), made with this Python (ComfyUI's need not have peft) on a tiny
    model of the same sizes as the one ComfyUI loads."""
    pytest.importorskip("peft", reason="peft is in requirements-test.txt")
    from qwen3vl_pack.tests.tiny_lora import TEXT_TARGETS, VISION_TARGETS, build_tiny_lora
    from qwen3vl_pack.tests.tiny_model import build_tiny_model

    model = build_tiny_model(dst.parent / "lora-base", "dense")
    return build_tiny_lora(model, dst, TEXT_TARGETS + VISION_TARGETS)


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


def _widget_index(name: str, node_id: str = LOADER) -> int:
    """Where ``name``'s value is in a saved node (widgets only, in order; a seed's control value counted)."""
    from qwen3vl_pack import NODE_CLASS_MAPPINGS
    from qwen3vl_pack.tests.workflow_check import pack_specs, widget_inputs

    spec = pack_specs({node_id: NODE_CLASS_MAPPINGS[node_id]})[node_id]
    return [w[0] for w in widget_inputs(spec)].index(name)


SAM3_NODES = {"CheckpointLoaderSimple", "SAM3_Detect"}  # points_to_sam3.json: a SAM3 checkpoint is not here


def _without_sam3(wf: dict) -> dict:
    """The workflow without its SAM3 branch (checkpoint loader, SAM3 Detect and what only they feed)."""
    drop = {n["id"] for n in wf["nodes"] if n["type"] in SAM3_NODES}
    while True:
        more = {lk[3] for lk in wf["links"] if lk[1] in drop} - drop
        if not more:
            break
        drop |= more
    gone = {lk[0] for lk in wf["links"] if lk[1] in drop or lk[3] in drop}
    wf["nodes"] = [n for n in wf["nodes"] if n["id"] not in drop]
    wf["links"] = [lk for lk in wf["links"] if lk[0] not in gone]
    for node in wf["nodes"]:
        for out in node.get("outputs", []):
            out["links"] = [lk for lk in (out.get("links") or []) if lk not in gone] or None
    return wf


def _widget_names(node_type: str) -> list[str]:
    """A pack node's widgets in the order the frontend saves their values (a seed's control value included)."""
    from qwen3vl_pack import NODE_CLASS_MAPPINGS
    from qwen3vl_pack.tests.workflow_check import pack_specs, widget_inputs

    specs = pack_specs(NODE_CLASS_MAPPINGS)
    return [name for name, _, _ in widget_inputs(specs[node_type])] if node_type in specs else []


def _complete_appended_widgets(node: dict) -> None:
    """A workflow saved before a widget was appended (``thinking``, issue 18) lacks its value; the frontend fills
    the default when it opens it. The harness converts by position and guesses a seed's control value from the
    count, so the default is filled here as the frontend would."""
    from qwen3vl_pack import NODE_CLASS_MAPPINGS
    from qwen3vl_pack.tests.workflow_check import APPENDED_LATER

    names = _widget_names(node["type"])
    values = node.get("widgets_values")
    if not names or not isinstance(values, list):
        return
    optional = NODE_CLASS_MAPPINGS[node["type"]].INPUT_TYPES().get("optional", {})
    while len(values) < len(names) and names[len(values)] in APPENDED_LATER:
        values.append(optional[names[len(values)]][1]["default"])


def _prepare(workflow: Path, env: dict, dst: Path, model_key: str = "model") -> Path:
    wf = json.loads(workflow.read_text(encoding="utf-8"))
    if any(n["type"] == "SAM3_Detect" for n in wf["nodes"]):
        if not (Path(COMFY) / "comfy_extras" / "nodes_sam3.py").is_file():
            pytest.skip(f"{workflow.name} needs core SAM3_Detect (ComfyUI 0.33 or later)")
        wf = _without_sam3(wf)  # no SAM3 checkpoint here: the Qwen3-VL part runs; the SAM3 socket is checked below
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
        assert node["widgets_values"][_widget_index("model")] in LISTED_NAMES  # not in the empty list
        node["widgets_values"][_widget_index("model_path")] = str(env[model_key])
    for node in wf["nodes"]:
        if node["type"] == LORA:  # widgets: lora, strength, lora_path
            assert node["widgets_values"][0] not in ("", "listed-lora")  # a name this machine does not have
            node["widgets_values"][2] = str(env["lora"])
        _complete_appended_widgets(node)
        if model_key == "qwen35" and "max_new_tokens" in _widget_names(node["type"]):  # random text: cap it
            index = _widget_names(node["type"]).index("max_new_tokens")
            node["widgets_values"][index] = min(node["widgets_values"][index] or TINY_TOKENS, TINY_TOKENS)
        if node["type"] == "Qwen3VL_LoadImageFolder":
            node["widgets_values"][0] = str(env["images"])
        if node["type"] in ("Qwen3VL_Task", "Qwen3VL_RunTask"):  # random text up to 4096 tokens only costs time
            node["widgets_values"][_widget_index("max_new_tokens", node["type"])] = TINY_TOKENS
    dst.write_text(json.dumps(wf), encoding="utf-8")
    return dst


def _run_terminating(cmd: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    """Like subprocess.run, but a client past ``timeout`` gets SIGTERM first, so it stops the ComfyUI it started
    (tests/comfy_ws.py); a failing test never leaves a server behind."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def test_models_folder_is_empty_in_comfyui(comfy_env):
    out = _harness(comfy_env, "--object-info-only", LOADER)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    info = json.loads(out.stdout[out.stdout.index("{"):])
    assert info[LOADER]["input"]["required"]["model"][0] == ["(no Qwen3-VL folder found in models/LLM)"]


def test_lora_list_comes_from_extra_model_paths(comfy_env):
    out = _harness(comfy_env, "--object-info-only", LORA)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    info = json.loads(out.stdout[out.stdout.index("{"):])
    assert info[LORA]["input"]["required"]["lora"][0] == ["listed-lora"]


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_runs_in_real_comfyui_with_model_path_only(workflow, comfy_env, tmp_path):
    wf = _prepare(workflow, comfy_env, tmp_path / workflow.name)
    out = _harness(comfy_env, str(wf))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads(out.stdout[out.stdout.index("{"):])
    assert result["status"] == "success" and result["outputs"]
    if any(node["type"] == LORA for node in json.loads(wf.read_text(encoding="utf-8"))["nodes"]):
        log = max(comfy_env["runs"].glob("*/server.log"), key=lambda p: p.stat().st_mtime)
        assert "LoRA my-tiny-lora: 28 modules changed at strength 1" in log.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", QWEN35_WORKFLOWS)
def test_workflow_runs_on_a_tiny_qwen35(name, comfy_env, tmp_path):
    """The same workflows on a tiny random Qwen3.5 (dense, hybrid attention, new token ids), via model_path only."""
    wf = _prepare(ROOT / "workflows" / name, comfy_env, tmp_path / name, model_key="qwen35")
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
    out = _run_terminating(cmd, env, timeout=900)
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


def test_sam3_detect_takes_the_points_string_where_core_has_it(comfy_env):
    if not (Path(COMFY) / "comfy_extras" / "nodes_sam3.py").is_file():
        pytest.skip("core SAM3_Detect is in ComfyUI 0.33 and later")
    out = _harness(comfy_env, "--object-info-only", "SAM3_Detect", "Qwen3VL_RunTask", "Qwen3VL_BBoxToBoundingBox")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    info = json.loads(out.stdout[out.stdout.index("{"):])
    sam3 = info["SAM3_Detect"]["input"]["optional"]
    task = info["Qwen3VL_RunTask"]
    assert sam3["positive_coords"][0] == task["output"][task["output_name"].index("points")] == "STRING"
    assert sam3["bboxes"][0] == info["Qwen3VL_BBoxToBoundingBox"]["output"][0] == "BOUNDING_BOX"


def test_a_failing_client_never_leaves_its_server_running(comfy_env):
    """tests/comfy_ws.py's server is stopped when the code using it fails, and when its client is terminated."""
    import signal
    import time

    sys.path.insert(0, str(ROOT / "tests"))
    from comfy_ws import ComfyServer

    def alive(pid: int) -> bool:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return False
        return True

    os.environ.setdefault("COMFYUI_HARNESS", str(HARNESS))
    with pytest.raises(RuntimeError, match="a failing test"):
        with ComfyServer([str(ROOT)], comfy_dir=COMFY, python=PYTHON, run_root=str(comfy_env["runs"])) as server:
            pid = server.pid
            assert alive(pid)
            raise RuntimeError("a failing test")
    for _ in range(50):
        if not alive(pid):
            break
        time.sleep(0.2)
    assert not alive(pid)

    cmd = [PYTHON, str(ROOT / "tests" / "comfy_ws.py"), str(ROOT / "workflows" / "describe_image.json"),
           "--custom-node", str(ROOT), "--input", str(INPUTS[0]), "--run-root", str(comfy_env["runs"]),
           "--set", "3.max_new_tokens=4000", "--set", f"1.model_path={json.dumps(str(comfy_env['model']))}",
           f"--extra-arg=--extra-model-paths-config {comfy_env['yaml']}"]
    env = dict(os.environ, COMFYUI_DIR=COMFY, COMFYUI_PYTHON=PYTHON, COMFYUI_HARNESS=str(HARNESS))
    client = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = ""
    while "comfy_ws: server pid" not in line and client.poll() is None:
        line = client.stderr.readline()
    assert "comfy_ws: server pid" in line, client.communicate()[1][-3000:]
    pid = int(line.split("server pid ")[1].split()[0])
    time.sleep(1)  # the server is up (or starting) and the prompt queued; a random answer may end early (EOS),
    # so the client is terminated at once rather than after the answer could have finished on its own
    assert alive(pid)
    client.send_signal(signal.SIGTERM)
    client.communicate(timeout=120)
    for _ in range(100):
        if not alive(pid):
            break
        time.sleep(0.2)
    assert not alive(pid), f"the client was terminated but its ComfyUI (process group {pid}) is still running"
