"""P1 in a real ComfyUI: workflows/describe_image.json queued on a ComfyUI server (started by the harness, with
this pack, live text and progress on) / a plain transformers script, same tiny model, same image, greedy
64 new tokens, interleaved round by round.

    COMFYUI_DIR=/work/comfyui COMFYUI_PYTHON=/work/comfy_venv/bin/python \
        /work/comfy_venv/bin/python benchmarks/p1_comfyui.py [--rounds 30] [--tokens 64] [--threads 1]

Three ways to the same answer, rotated every round:
  ours   the workflow on the server: LoadImage, the loader (a cache hit), Generate, two Preview Any;
  node   the same server, the same five-node shape, but the plain script's code as a bare custom node (written
         to a temporary folder; no progress, no live text): what ComfyUI itself costs;
  plain  the plain script in its own process: open the PNG, chat template + processor, generate, decode.
Server time per answer: POST /prompt to execution_success on the websocket, as a client sees it (ComfyUI runs
with --cache-none, so every node runs every time). CPU time per answer: the server's from /proc (all threads:
HTTP, validation, every node, websocket events), the script's process_time; on a machine shared with other
work, wall times swing with the load and CPU times much less. Every process uses --threads torch threads.
P1 = ours / plain (target <= 1.05); ours / node is what the pack adds inside ComfyUI.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

PLAIN_CODE = r'''
import time
import numpy as np
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

_MODELS = {}


def load(model_dir):
    if model_dir not in _MODELS:
        _MODELS[model_dir] = (AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval(),
                              AutoProcessor.from_pretrained(model_dir))
    return _MODELS[model_dir]


def answer(model_dir, image, prompt, tokens):
    model, processor = load(model_dir)
    messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": prompt}]}]
    inputs = processor.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=True,
                                           return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=tokens, do_sample=False)
    new = out[:, inputs["input_ids"].shape[1]:]
    text = processor.batch_decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)[0]
    return text.strip(), int(new.shape[1])


class P1PlainGenerate:
    """The plain script as a bare ComfyUI node (benchmark only)."""
    CATEGORY = "benchmark"
    FUNCTION = "run"
    RETURN_TYPES = ("STRING",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "model_dir": ("STRING", {"default": ""}),
                             "prompt": ("STRING", {"default": ""}), "tokens": ("INT", {"default": 64})}}

    def run(self, image, model_dir, prompt, tokens):
        pil = Image.fromarray((image[0].numpy() * 255).round().astype(np.uint8))
        return (answer(model_dir, pil, prompt, tokens)[0],)


NODE_CLASS_MAPPINGS = {"P1PlainGenerate": P1PlainGenerate}
'''

SCRIPT = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from p1_plain_node import answer, load
from PIL import Image
model_dir, image_path, prompt, tokens = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
load(model_dir)
for line in sys.stdin:
    start, cpu = time.perf_counter(), time.process_time()
    text, n = answer(model_dir, Image.open(image_path).convert("RGB"), prompt, tokens)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"seconds": seconds, "cpu": cpu, "text": text, "tokens": n}), flush=True)
"""


def _ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(a) / statistics.median(b)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by the ComfyUI server and the plain script
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)

    from comfy_ws import ComfyServer

    base = Path(tempfile.mkdtemp(prefix="qwen3vl-p1-comfyui-"))
    model_dir = base / "LLM" / "Qwen3-VL-2B-Instruct"
    subprocess.run([python, str(ROOT / "tests" / "tiny_model.py"), str(model_dir), "dense"], check=True,
                   capture_output=True)
    yaml = base / "extra_model_paths.yaml"
    yaml.write_text(f"p1:\n  base_path: {base}\n  LLM: LLM\n", encoding="utf-8")
    node_pack = base / "packs" / "p1_plain_node"
    node_pack.mkdir(parents=True)
    (node_pack / "__init__.py").write_text(PLAIN_CODE, encoding="utf-8")
    image = ROOT / "assets" / "sample.png"
    workflow = json.loads((ROOT / "workflows" / "describe_image.json").read_text(encoding="utf-8"))
    generate = next(n for n in workflow["nodes"] if n["type"] == "Qwen3VL_Generate")
    prompt_text = generate["widgets_values"][0]

    plain = subprocess.Popen([python, "-c", SCRIPT, str(node_pack.parent), str(model_dir), str(image), prompt_text,
                              str(args.tokens)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run_plain() -> dict:
        plain.stdin.write("go\n")
        plain.stdin.flush()
        return json.loads(plain.stdout.readline())

    server = ComfyServer([str(ROOT), str(node_pack)], [str(image)],
                         ["--cache-none", f"--extra-model-paths-config {yaml}"], run_root=str(base / "runs"))
    try:
        server.start()
        gen_id = str(generate["id"])
        ours_api = server.api_prompt(workflow, {gen_id: {"max_new_tokens": args.tokens, "preset": "Greedy"}})
        load_id = next(k for k, v in ours_api.items() if v["class_type"] == "LoadImage")
        node_api = {"1": {"class_type": "PrimitiveString", "inputs": {"value": str(model_dir)}},
                    load_id: ours_api[load_id],
                    "3": {"class_type": "P1PlainGenerate", "inputs": {"image": [load_id, 0], "model_dir": ["1", 0],
                                                                      "prompt": prompt_text, "tokens": args.tokens}},
                    "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}},
                    "5": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}}}

        def on_server(api: dict, node_id: str):
            def run() -> dict:
                cpu = server.cpu_seconds()
                result = server.run(api)
                cpu = server.cpu_seconds() - cpu
                assert result["status"] == "execution_success", result
                events = result["nodes"].get(node_id, {"progress": [], "texts": []})
                text = next(v["text"][0] for v in result["outputs"].values() if v.get("text") and not
                            v["text"][0].startswith("model: "))
                return {"seconds": result["seconds"], "cpu": cpu, "text": text,
                        "events": (len(events["progress"]), len(events["texts"]))}
            return run

        ways = {"ours": on_server(ours_api, gen_id), "node": on_server(node_api, "3"), "plain": run_plain}
        for _ in range(2):  # warm up (model loads, first-call costs)
            texts = {name: fn()["text"] for name, fn in ways.items()}
        assert len(set(texts.values())) == 1, texts  # the same answer three ways: the same work
        wall = {name: [] for name in ways}
        cpu = {name: [] for name in ways}
        events = []
        order = list(ways)
        for r in range(args.rounds):
            for name in order[r % 3:] + order[:r % 3]:
                result = ways[name]()
                wall[name].append(result["seconds"])
                cpu[name].append(result["cpu"])
                if name == "ours":
                    events.append(result["events"])
    finally:
        server.stop()
        plain.stdin.close()
        try:
            plain.wait(60)
        except subprocess.TimeoutExpired:
            plain.kill()
    out = sys.stdout.write
    out(f"rounds={args.rounds} tokens={args.tokens} threads={args.threads}\n")
    for name in ways:
        out(f"  {name:5s} median wall {statistics.median(wall[name]) * 1000:7.1f} ms   CPU "
            f"{statistics.median(cpu[name]) * 1000:7.1f} ms per answer (fastest: wall {min(wall[name]) * 1000:.1f}, "
            f"CPU {min(cpu[name]) * 1000:.1f})\n")
    out(f"events on Generate per answer (progress, text): median ({statistics.median(e[0] for e in events)}, "
        f"{statistics.median(e[1] for e in events)}), max ({max(e[0] for e in events)}, {max(e[1] for e in events)})\n")
    for label, a, b in (("P1 in ComfyUI, ours / plain script", "ours", "plain"),
                        ("the pack inside ComfyUI, ours / bare node", "ours", "node"),
                        ("ComfyUI itself, bare node / plain script", "node", "plain")):
        out(f"{label}: wall {_ratio(wall[a], wall[b]):.3f}, CPU {_ratio(cpu[a], cpu[b]):.3f} (medians); "
            f"fastest answers: wall {min(wall[a]) / min(wall[b]):.3f}, CPU {min(cpu[a]) / min(cpu[b]):.3f}\n")
    p1 = _ratio(cpu["ours"], cpu["plain"])
    out(f"P1 (CPU) = {p1:.3f} (target <= 1.05) {'OK' if p1 <= 1.05 else 'MISSED'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
