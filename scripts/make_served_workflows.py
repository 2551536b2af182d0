"""Write workflows/served_caption.json and gguf_caption.json from caption_folder.json: the loader replaced by
Qwen3-VL Server Model / Qwen3-VL GGUF (llama.cpp).

    python scripts/make_served_workflows.py
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER_WIDGETS = ["http://127.0.0.1:8000/v1", "", "", 120.0, 8, True]
NOTE = (
    "Caption a folder of images with Qwen3-VL served by vLLM (or SGLang, llama-server, Ollama, LM Studio): one .txt "
    "caption per image, several requests in flight at once; ComfyUI loads no model and keeps its VRAM.\n\n"
    "1. Serve a Qwen3-VL model, e.g. on a GPU machine:\n"
    "   vllm serve Qwen/Qwen3-VL-8B-Instruct --max-model-len 16384 --limit-mm-per-prompt.video 0 "
    "--mm-encoder-tp-mode data --async-scheduling\n"
    "   (see the pack's README for tensor parallel, several replicas, llama-server, Ollama and LM Studio).\n"
    "2. Qwen3-VL Server Model: set base_url to the server's address ending in /v1 (vLLM: http://HOST:8000/v1). "
    "model empty = the first model it serves. If it needs a key, put the key in an environment variable before "
    "starting ComfyUI and type that variable's NAME in api_key_env (never the key itself).\n"
    "3. Load Image Folder: CHANGE 'directory' to the absolute path of your image folder (the path below is a "
    "placeholder). Optional: a trigger word in 'prefix'.\n\n"
    "max_concurrency (8) requests run at once; vLLM batches them. Captions are written beside each image as "
    "<name>.txt; existing caption files are kept (policy 'skip') and captioned images are left out, so after a "
    "server restart, running the workflow again continues where it stopped. For thousands of images use "
    "`python cli.py caption DIR --server URL --concurrency 16`, which writes each caption as it arrives."
)


def _from_caption_folder(flow_id: str, node_type: str, widgets: list, size: list[int], note: str,
                        note_size: list[int]) -> dict:
    """caption_folder.json with its loader replaced by ``node_type`` (these widget values and size) and its Note."""
    flow = copy.deepcopy(json.loads((ROOT / "workflows" / "caption_folder.json").read_text(encoding="utf-8")))
    flow["id"] = flow_id
    for node in flow["nodes"]:
        if node["type"] == "Qwen3VL_ModelLoader":
            node["type"] = node_type
            node["properties"]["Node name for S&R"] = node_type
            node["widgets_values"] = list(widgets)
            node["size"] = size
        elif node["type"] == "Note":
            node["widgets_values"] = [note]
            node["size"] = note_size
    return flow


def served_caption() -> dict:
    return _from_caption_folder("00000000-0000-4000-8000-5e4ed0ca9710", "Qwen3VL_ServerModel", SERVER_WIDGETS,
                                [340, 230], NOTE, [520, 300])


GGUF_WIDGETS = ["Qwen3VL-8B-Instruct-Q4_K_M.gguf", "mmproj-Qwen3VL-8B-Instruct-F16.gguf", 8192, 2, 999, True, "", "",
                "", 120.0, 0, ""]
GGUF_NOTE = (
    "Caption a folder of images with a GGUF Qwen3-VL run by llama.cpp: one .txt caption per image. The GGUF node "
    "starts llama-server itself (on 127.0.0.1), keeps it for the next runs, and stops it with Unload Models, with "
    "keep_loaded off, or when ComfyUI exits.\n\n"
    "1. Get llama-server: a prebuilt llama.cpp release for your GPU (CUDA, Vulkan, Metal) or CPU from "
    "github.com/ggml-org/llama.cpp/releases; put its folder on PATH, or set QWEN3VL_LLAMA_SERVER, or type its path "
    "in the node's llama_server.\n"
    "2. Put a model .gguf and its mmproj .gguf (e.g. from Qwen/Qwen3-VL-8B-Instruct-GGUF: Q4_K_M + mmproj F16) in "
    "ComfyUI/models/LLM, refresh, and choose them (or give full paths in model_path / mmproj_path).\n"
    "3. Load Image Folder: CHANGE 'directory' to the absolute path of your image folder.\n\n"
    "context = tokens per request (images + prompt + caption); parallel = captions at once (llama-server divides "
    "its memory among them). gpu_layers 999 = the whole model on the GPU, 0 = CPU. An error names the input to "
    "fix and the server's log file."
)


def gguf_caption() -> dict:
    return _from_caption_folder("00000000-0000-4000-8000-6e4ed0ca9719", "Qwen3VL_GGUFModel", GGUF_WIDGETS,
                                [360, 330], GGUF_NOTE, [520, 320])


def main() -> None:
    path = ROOT / "workflows" / "served_caption.json"
    path.write_text(json.dumps(served_caption(), indent=2) + "\n", encoding="utf-8")
    path = ROOT / "workflows" / "gguf_caption.json"
    path.write_text(json.dumps(gguf_caption(), indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
