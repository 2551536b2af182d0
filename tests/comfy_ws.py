"""A websocket client for a real ComfyUI that the harness starts: every event a prompt causes, binary ones decoded.

The harness (shared/tools/comfyui_harness) starts and stops the server (``--object-info-only --keep-server``)
and converts UI workflows (its ``ui_to_api``). Its ``--show-events`` lists binary frames by size only, so this
client reads them itself: type 3 is TEXT (``send_progress_text``: node id + text), 1/2/4 are image previews.

Runs under ComfyUI's Python (it needs aiohttp), as a module (benchmarks) or a script (the real-ComfyUI tier):

    python tests/comfy_ws.py WORKFLOW --custom-node PACK --input FILE --set 3.max_new_tokens=256 \
        --extra-arg=--extra-model-paths-config=YAML [--rounds N]

prints one JSON object: per round the events of every node (progress / text counts, the texts) and the time
from POST /prompt to execution_success.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

HARNESS = Path(os.environ.get("COMFYUI_HARNESS", Path(__file__).resolve().parents[2] / "shared" / "tools" /
                              "comfyui_harness"))
TEXT_EVENT = 3


class ComfyServer:
    """A ComfyUI started by the harness and left running until :meth:`stop` (its own process group)."""

    def __init__(self, packs: list[str], inputs: list[str] = (), extra_args: list[str] = (), run_root: str = "",
                 comfy_dir: str = "", python: str = ""):
        self.comfy_dir = comfy_dir or os.environ["COMFYUI_DIR"]
        self.python = python or os.environ.get("COMFYUI_PYTHON", sys.executable)
        cmd = [self.python, str(HARNESS / "run_workflow.py"), "--object-info-only", "Qwen3VL_Generate",
               "--keep-server", "--link-mode", "extra-paths", "--isolate", "--disable-api-nodes",
               "--comfy-dir", self.comfy_dir, "--python", self.python]
        for pack in packs:
            cmd += ["--custom-node", pack]
        for f in inputs:
            cmd += ["--input", f]
        for arg in extra_args:
            cmd.append(f"--extra-arg={arg}")
        if run_root:
            cmd += ["--run-root", run_root]
        self.cmd = cmd
        self.pid: int | None = None
        self.base = ""

    def start(self) -> ComfyServer:
        out = subprocess.run(self.cmd, capture_output=True, text=True, timeout=600)
        found = re.search(r"server left running: pid (\d+) at (http://\S+)", out.stderr)
        if out.returncode != 0 or not found:
            raise RuntimeError(f"ComfyUI did not start (rc {out.returncode}):\n{out.stderr[-4000:]}")
        self.pid, self.base = int(found.group(1)), found.group(2)
        atexit.register(self.stop)  # a client that fails or exits early never leaves the server running
        sys.stderr.write(f"comfy_ws: server pid {self.pid} at {self.base}\n")
        sys.stderr.flush()
        return self

    def stop(self) -> None:
        if self.pid is None:
            return
        try:
            os.killpg(self.pid, signal.SIGTERM)  # the harness started it in its own session
        except ProcessLookupError:
            self.pid = None
            return
        for _ in range(150):
            try:
                os.killpg(self.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.killpg(self.pid, signal.SIGKILL)
        self.pid = None

    def __enter__(self) -> ComfyServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far, all its threads (Linux /proc, nanosecond counters)."""
        total = 0
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
                continue
        return total / 1e9

    def get(self, path: str):
        with urllib.request.urlopen(self.base + path, timeout=120) as r:
            return json.loads(r.read())

    def api_prompt(self, workflow: dict, overrides: dict[str, dict] | None = None) -> dict:
        """A UI workflow -> API prompt (the harness's converter, on this server's /object_info)."""
        sys.path.insert(0, str(HARNESS))
        from ui_to_api import ui_to_api  # the harness's module

        prompt = ui_to_api(workflow, self.get("/object_info"))
        for node_id, values in (overrides or {}).items():
            prompt[node_id]["inputs"].update(values)
        return prompt

    def run(self, prompt: dict, timeout: float = 600) -> dict:
        return asyncio.run(_run(self.base, prompt, timeout))


def decode_binary(data: bytes) -> tuple[int, str | None, str | None]:
    """A binary websocket frame -> (event type, node id, text); node id and text only for TEXT events."""
    kind = struct.unpack(">I", data[:4])[0]
    if kind != TEXT_EVENT:
        return kind, None, None
    size = struct.unpack(">I", data[4:8])[0]
    return kind, data[8:8 + size].decode("utf-8"), data[8 + size:].decode("utf-8", errors="replace")


async def _run(base: str, prompt: dict, timeout: float) -> dict:
    import aiohttp

    client_id = str(uuid.uuid4())
    nodes: dict[str, dict] = {}
    status, other_binary = None, 0

    def node(node_id) -> dict:
        return nodes.setdefault(str(node_id), {"progress": [], "texts": []})

    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{base.replace('http', 'ws', 1)}/ws?clientId={client_id}",
                                      max_msg_size=0) as ws:
            start = time.perf_counter()
            async with session.post(base + "/prompt", json={"prompt": prompt, "client_id": client_id}) as r:
                reply = await r.json(content_type=None)
                if r.status != 200:
                    return {"status": "rejected", "reply": reply}
            prompt_id = reply["prompt_id"]
            deadline = start + timeout
            while status is None:
                msg = await ws.receive(timeout=max(1.0, deadline - time.perf_counter()))
                if msg.type == aiohttp.WSMsgType.BINARY:
                    kind, node_id, text = decode_binary(msg.data)
                    if kind == TEXT_EVENT:
                        node(node_id)["texts"].append(text)
                    else:
                        other_binary += 1
                    continue
                if msg.type != aiohttp.WSMsgType.TEXT:
                    status = f"websocket {msg.type}"
                    break
                event = json.loads(msg.data)
                kind, data = event.get("type"), event.get("data") or {}
                if data.get("prompt_id") not in (None, prompt_id):
                    continue
                if kind == "progress":
                    node(data["node"])["progress"].append(data["value"])
                elif kind in ("execution_success", "execution_error", "execution_interrupted"):
                    status = kind
                    if kind == "execution_error":
                        nodes["error"] = data
            seconds = time.perf_counter() - start
        history = {}
        for _ in range(50):  # ComfyUI writes the history right after the last websocket message
            async with session.get(f"{base}/history/{prompt_id}") as r:
                history = (await r.json()).get(prompt_id, {})
            if history.get("outputs"):
                break
            await asyncio.sleep(0.1)
    return {"status": status, "seconds": seconds, "nodes": nodes, "other_binary_events": other_binary,
            "outputs": history.get("outputs", {})}


def _overrides(pairs: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        node_id, _, name = key.partition(".")
        out.setdefault(node_id, {})[name] = json.loads(value)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workflow", type=Path)
    ap.add_argument("--custom-node", action="append", required=True)
    ap.add_argument("--input", action="append", default=[])
    ap.add_argument("--extra-arg", action="append", default=[])
    ap.add_argument("--set", action="append", default=[], help="NODE.INPUT=JSON value for the API prompt")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--run-root", default="")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # terminated (a test's timeout): stop the server too
    workflow = json.loads(args.workflow.read_text(encoding="utf-8"))
    with ComfyServer(args.custom_node, args.input, args.extra_arg, args.run_root) as server:
        prompt = server.api_prompt(workflow, _overrides(args.set))
        rounds = [server.run(prompt) for _ in range(args.rounds)]
    sys.stdout.write(json.dumps({"prompt": prompt, "rounds": rounds}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
