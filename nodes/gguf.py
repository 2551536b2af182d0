"""Qwen3VL_GGUFModel: a GGUF Qwen3-VL + its mmproj, run by a llama-server this pack starts -> QWEN3VL_MODEL."""

from __future__ import annotations

from ..loaders.gguf import MAX_CTX, MAX_PARALLEL, MIN_CTX, list_gguf, resolve_listed, start_gguf
from . import comfy_services as comfy
from .loader import MODEL_TYPE

NO_MODEL = "(no .gguf model in models/LLM)"
NO_MMPROJ = "(no mmproj .gguf in models/LLM)"


class Qwen3VLGGUFModel:
    DESCRIPTION = ("Runs a GGUF Qwen3-VL (or Qwen3.5) with llama.cpp: give the model .gguf and its mmproj (vision "
                   "projector) .gguf, and this node starts llama.cpp's llama-server on 127.0.0.1 (a prebuilt "
                   "release: CUDA, Vulkan, Metal or CPU; no Python build), waits until it is ready and hands every "
                   "Qwen3-VL node the served model. One server per settings, reused between runs; stopped by "
                   "Unload Models, by keep_loaded off after the run, and when ComfyUI exits. Its log file is named "
                   "in every error. No video (llama-server takes images only).")
    CATEGORY = "Qwen3-VL"
    FUNCTION = "start"
    RETURN_TYPES = (MODEL_TYPE,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The GGUF model served by llama-server; connect it wherever a Qwen3-VL model goes (Generate, "
                       "Grounding, Task, Batch Caption).",)

    @classmethod
    def INPUT_TYPES(cls):
        models, projectors = list_gguf(comfy.llm_dirs())
        return {
            "required": {
                "model": (models or [NO_MODEL], {"tooltip": "The language model .gguf in models/LLM (or an LLM "
                          "folder of extra_model_paths.yaml), e.g. Qwen3-VL-8B-Instruct-Q4_K_M.gguf."}),
                "mmproj": (projectors or [NO_MMPROJ], {"tooltip": "Its vision projector, a .gguf whose name holds "
                           "'mmproj', from the same repository (e.g. mmproj-Qwen3-VL-8B-Instruct-F16.gguf)."}),
                "context": ("INT", {"default": 8192, "min": MIN_CTX, "max": MAX_CTX, "step": 256, "tooltip":
                            "Tokens one request may use: images (up to max_visual_tokens each) + prompt + answer. "
                            "The server gets -c context x parallel, since llama-server divides -c among its slots."}),
                "parallel": ("INT", {"default": 1, "min": 1, "max": MAX_PARALLEL, "tooltip": "Requests run at "
                             "once (llama-server --parallel slots); Batch Caption and Grounding of a batch send this "
                             "many. Each slot needs its own context memory."}),
                "gpu_layers": ("INT", {"default": 999, "min": -1, "max": 100000, "tooltip": "Layers put on the "
                               "GPU (-ngl): 999 = all (fastest), 0 = CPU only, fewer to save VRAM."}),
                "keep_loaded": ("BOOLEAN", {"default": True, "tooltip": "Keep llama-server running between runs. "
                                "Off: it is stopped after each run and started again next time."}),
            },
            "optional": {
                "model_path": ("STRING", {"default": "", "tooltip": "A full path of the model .gguf; used instead "
                               "of the list when set."}),
                "mmproj_path": ("STRING", {"default": "", "tooltip": "A full path of the mmproj .gguf; used instead "
                                "of the list when set."}),
                "llama_server": ("STRING", {"default": "", "tooltip": "The llama-server program (or its folder) of a "
                                 "llama.cpp release (github.com/ggml-org/llama.cpp/releases). Empty: the "
                                 "QWEN3VL_LLAMA_SERVER environment variable, else llama-server on PATH."}),
                "timeout_s": ("FLOAT", {"default": 120.0, "min": 1.0, "max": 86400.0, "step": 1.0, "tooltip":
                              "Longest wait, in seconds, for the server's next bytes while answering."}),
                "port": ("INT", {"default": 0, "min": 0, "max": 65535, "tooltip": "The 127.0.0.1 port; 0 = a free "
                         "one."}),
                "extra_args": ("STRING", {"default": "", "tooltip": "More llama-server flags, space-separated (e.g. "
                               "--no-repack, -fa on, --image-min-tokens 1024). The pack sets -m, --mmproj, --host, "
                               "--port, -c, --parallel, -ngl, --jinja, --no-webui and --alias."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, model, mmproj):
        """Names from another machine (or an empty models/LLM with *_path set) are checked when the node runs."""
        for value in (model, mmproj):
            if not isinstance(value, str):
                return f"expected a .gguf file name, got {type(value).__name__}"
        return True

    def start(self, model, mmproj, context, parallel, gpu_layers, keep_loaded, model_path="", mmproj_path="",
              llama_server="", timeout_s=120.0, port=0, extra_args=""):
        comfy.install_hooks()  # Unload Models / ComfyUI's /free also stop the server
        names = {}
        files = []
        for listed, path, empty, name in ((model, model_path, NO_MODEL, "model"),
                                          (mmproj, mmproj_path, NO_MMPROJ, "mmproj")):
            if path and path.strip():
                files.append(path.strip())
                names[name] = f"{name}_path"
            else:
                files.append("" if listed == empty else resolve_listed(listed, comfy.llm_dirs(), name))
        bundle = start_gguf(files[0], files[1], llama_server, context, parallel, gpu_layers, keep_loaded, timeout_s,
                            port, extra_args, names=names)
        return (bundle,)
