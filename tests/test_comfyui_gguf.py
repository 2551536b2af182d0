"""Optional tier: a real ComfyUI running workflows/gguf_caption.json's graph on the tiny GGUF is stopped mid-run
(SIGKILL: nothing of ComfyUI runs; SIGINT: Ctrl-C in its terminal) and leaves no llama-server process behind.

Runs when COMFYUI_DIR / COMFYUI_PYTHON point at a ComfyUI and scripts/llama_server.sh has built llama-server and
the tiny GGUF; skipped otherwise (reason shown by ``pytest -ra``). The pack is registered through an
extra_model_paths.yaml ``custom_nodes`` entry, so the ComfyUI checkout itself is never changed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
COMFY = os.environ.get("COMFYUI_DIR", "")
PYTHON = os.environ.get("COMFYUI_PYTHON", "")
BUILD = ROOT / ".llama-build"
FILES = {"llama_server": BUILD / "bin" / "llama-server", "model_path": BUILD / "tiny" / "qwen3vl-tiny-Q8_0.gguf",
         "mmproj_path": BUILD / "tiny" / "mmproj-qwen3vl-tiny-f16.gguf"}

if not (COMFY and PYTHON):
    pytest.skip("COMFYUI_DIR / COMFYUI_PYTHON are not set: the real-ComfyUI tier needs a ComfyUI checkout",
                allow_module_level=True)
if not all(p.is_file() for p in FILES.values()):
    pytest.skip("no llama-server build (run scripts/llama_server.sh all)", allow_module_level=True)


def _free_port() -> int:
    from qwen3vl_pack.loaders.llama_process import free_port

    return free_port()


def _defaults(cls, **given) -> dict:
    spec = cls.INPUT_TYPES()
    out = {}
    for name, (kind, *opts) in {**spec["required"], **spec.get("optional", {})}.items():
        if isinstance(kind, str) and kind.isupper() and kind not in ("INT", "FLOAT", "STRING", "BOOLEAN"):
            continue  # a socket
        if opts and "default" in opts[0] and not opts[0].get("forceInput"):
            out[name] = opts[0]["default"]
        elif isinstance(kind, list):
            out[name] = kind[0]
    out.update(given)
    return out


def _prompt(images: Path, out_dir: Path, port: int) -> dict:
    """The gguf_caption.json graph in API form: GGUF node -> Load Image Folder -> Batch Caption -> Save Captions."""
    from qwen3vl_pack.nodes.caption import Qwen3VLBatchCaption, Qwen3VLLoadImageFolder, Qwen3VLSaveCaptions
    from qwen3vl_pack.nodes.gguf import Qwen3VLGGUFModel

    gguf = _defaults(Qwen3VLGGUFModel, **{k: str(v) for k, v in FILES.items()}, model="tiny.gguf",
                     mmproj="mmproj-tiny.gguf", context=4096, parallel=1, gpu_layers=0, port=port,
                     extra_args="--no-repack")
    folder = _defaults(Qwen3VLLoadImageFolder, directory=str(images))
    caption = _defaults(Qwen3VLBatchCaption, model=["1", 0], images=["2", 0], max_new_tokens=512, batch_size=1)
    save = _defaults(Qwen3VLSaveCaptions, captions=["3", 0], paths=["2", 1], output_dir=str(out_dir))
    return {"1": {"class_type": "Qwen3VL_GGUFModel", "inputs": gguf},
            "2": {"class_type": "Qwen3VL_LoadImageFolder", "inputs": folder},
            "3": {"class_type": "Qwen3VL_BatchCaption", "inputs": caption},
            "4": {"class_type": "Qwen3VL_SaveCaptions", "inputs": save}}


def _llama_pids(port: int) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"llama-server") and str(port).encode() in cmd and state != "Z":
            pids.append(int(proc.name))
    return pids


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_comfyui_stopped_mid_run_leaves_no_llama_server(tmp_path, how):
    from PIL import Image

    base = tmp_path / "base"
    (base / "LLM").mkdir(parents=True)
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / "comfyui-qwen3vl").symlink_to(ROOT, target_is_directory=True)
    yaml = tmp_path / "extra_model_paths.yaml"
    yaml.write_text(f"qwen3vl_tests:\n  base_path: {base}\n  LLM: LLM\n  custom_nodes: custom_nodes\n",
                    encoding="utf-8")
    images = tmp_path / "images"
    images.mkdir()
    for i in range(40):
        Image.new("RGB", (256, 256), (6 * i, 90, 200)).save(images / f"img{i:02d}.png")
    port, llama_port = _free_port(), _free_port()
    dirs = {d: tmp_path / d for d in ("output", "input", "temp", "user")}
    for d in dirs.values():
        d.mkdir()
    log = open(tmp_path / "comfyui.log", "w")
    comfy = subprocess.Popen(
        [PYTHON, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--extra-model-paths-config",
         str(yaml), "--disable-api-nodes", "--output-directory", str(dirs["output"]), "--input-directory",
         str(dirs["input"]), "--temp-directory", str(dirs["temp"]), "--user-directory", str(dirs["user"])],
        cwd=COMFY, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "QWEN3VL_LLAMA_LOG_DIR": str(tmp_path / "llama-logs"), "PYTHONDONTWRITEBYTECODE": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: httpx.get(url + "/system_stats", timeout=2).status_code == 200, 300, comfy, tmp_path)
        body = {"prompt": _prompt(images, tmp_path / "captions", llama_port), "client_id": "gguf-kill-test"}
        answer = httpx.post(url + "/prompt", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        llama = f"http://127.0.0.1:{llama_port}"
        _wait(lambda: _busy(llama), 300, comfy, tmp_path)  # mid-run: llama-server is answering Batch Caption
        servers = _llama_pids(llama_port)
        assert len(servers) == 1
        os.kill(comfy.pid, how)
        comfy.wait(60)
        deadline = time.monotonic() + 30
        while _llama_pids(llama_port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _llama_pids(llama_port) == [], "llama-server outlived ComfyUI"
        assert not (tmp_path / "captions").exists() or len(list((tmp_path / "captions").glob("*.txt"))) < 40
    finally:
        if comfy.poll() is None:
            os.killpg(comfy.pid, signal.SIGKILL)
            comfy.wait()
        for pid in _llama_pids(llama_port):  # never leave one behind, even when the test fails
            os.kill(pid, signal.SIGKILL)


def _busy(llama: str) -> bool:
    slots = httpx.get(llama + "/slots", timeout=2).json()  # a dict while loading (an error), then a list
    return isinstance(slots, list) and any(s.get("is_processing") for s in slots)


def _wait(ready, seconds: float, comfy: subprocess.Popen, tmp_path: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert comfy.poll() is None, (tmp_path / "comfyui.log").read_text()[-3000:]
        try:
            if ready():
                return
        except (httpx.HTTPError, json.JSONDecodeError):
            pass
        time.sleep(0.3)
    pytest.fail("timed out; ComfyUI log:\n" + (tmp_path / "comfyui.log").read_text()[-3000:])
