"""Qwen3VL_ServerModel: a Qwen3-VL served by vLLM / SGLang / llama-server / Ollama / LM Studio -> QWEN3VL_MODEL."""

from __future__ import annotations

from ..loaders.backends.served import MAX_CONCURRENCY, connect
from .loader import MODEL_TYPE


class Qwen3VLServerModel:
    DESCRIPTION = ("Uses a Qwen3-VL model served by an OpenAI-compatible server (vLLM, SGLang, llama.cpp's "
                   "llama-server, Ollama, LM Studio) instead of loading it into ComfyUI: every Qwen3-VL node takes "
                   "its output like a loaded model. Keeps ComfyUI's VRAM free, and gives vLLM's speed, GGUF and "
                   "quantized MoE, and several GPUs or machines. Checks the server when it runs.")
    CATEGORY = "Qwen3-VL"
    FUNCTION = "connect"
    RETURN_TYPES = (MODEL_TYPE,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The served model; connect it wherever a Qwen3-VL model goes (Generate, Grounding, Batch "
                       "Caption...).",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "base_url": ("STRING", {"default": "http://127.0.0.1:8000/v1", "tooltip": "The server's OpenAI API "
                             "address, ending in /v1. vLLM/SGLang: http://HOST:8000/v1 (SGLang often :30000), "
                             "llama-server: :8080/v1, Ollama: :11434/v1, LM Studio: :1234/v1."}),
                "model": ("STRING", {"default": "", "tooltip": "The served model's name as the server lists it "
                          "(GET /v1/models). Empty = the first one it serves."}),
                "api_key_env": ("STRING", {"default": "", "tooltip": "The NAME of the environment variable that "
                                "holds the API key, set before ComfyUI starts: QWEN3VL_API_KEY or "
                                "QWEN3VL_API_KEY_<SUFFIX> only (so a shared workflow cannot send another secret). "
                                "Copy a key you have: export QWEN3VL_API_KEY=\"$OPENAI_API_KEY\". The key itself is "
                                "never typed here, saved in the workflow or logged. Empty = no key."}),
                "timeout_s": ("FLOAT", {"default": 120.0, "min": 1.0, "max": 86400.0, "step": 1.0, "tooltip":
                              "Longest wait, in seconds, without progress: for an answer's headers as a whole, "
                              "the first token, every token after (keep-alive comments do not count). A stalled "
                              "server gives an error after this long."}),
                "max_concurrency": ("INT", {"default": 8, "min": 1, "max": MAX_CONCURRENCY, "tooltip": "Most "
                                    "requests in flight at once (Batch Caption, Grounding of a batch). vLLM/SGLang "
                                    "batch them: 8-32 is fast. llama-server/Ollama/LM Studio: their parallel slots "
                                    "(often 1)."}),
                "keep_alive": ("BOOLEAN", {"default": True, "tooltip": "Keep HTTP connections to the server open "
                               "between runs (faster). Off: new connections for each run, closed after it."}),
            },
        }

    def connect(self, base_url, model, api_key_env, timeout_s, max_concurrency, keep_alive):
        return (connect(base_url, model, api_key_env, timeout_s, max_concurrency, keep_alive),)
