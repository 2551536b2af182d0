"""Qwen3VL_ModelLoader: a local Qwen3-VL folder -> QWEN3VL_MODEL (cached once)."""

from __future__ import annotations

from ..loaders.cache import load_model
from ..loaders.options import ATTENTIONS, DEVICES, DTYPES, QUANTIZATIONS
from ..loaders.resolve import list_model_folders
from . import comfy_services as comfy

MODEL_TYPE = "QWEN3VL_MODEL"


class Qwen3VLModelLoader:
    DESCRIPTION = ("Loads a Qwen3-VL model (dense 2B-32B or MoE 30B-A3B/235B-A22B, Instruct or Thinking) or a "
                   "Qwen3.5/3.6/3.8 (dense 0.8B-27B or MoE 35B-A3B/122B-A10B/397B-A17B; transformers >= 5.2) "
                   "from a local folder with its processor. The class comes from config.json. Loaded once "
                   "and cached: the same settings return the same model without reading its weights again. "
                   "Never downloads anything.")
    CATEGORY = "Qwen3-VL"
    FUNCTION = "load"
    RETURN_TYPES = (MODEL_TYPE,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The loaded Qwen3-VL / Qwen3.5 model and processor; connect it to a Qwen3-VL Generate "
                       "node.",)

    @classmethod
    def INPUT_TYPES(cls):
        folders = list_model_folders(comfy.llm_dirs()) or [comfy.NO_MODELS]
        return {
            "required": {
                "model": (folders, {"tooltip": "A model folder in ComfyUI/models/LLM (or any LLM path from "
                                               "extra_model_paths.yaml). It needs config.json, *.safetensors, "
                                               "tokenizer and processor files."}),
                "dtype": (list(DTYPES), {"default": "auto", "tooltip": "Weight precision. auto: bf16 on CUDA GPUs "
                                         "with native bf16 (compute capability 8.0+: RTX 30xx/40xx, A100, H100), fp16 "
                                         "on older GPUs (T4, RTX 20xx, V100) and Apple GPUs, fp32 on CPU."}),
                "attention": (list(ATTENTIONS), {"default": "auto", "tooltip": "Attention kernel. auto: "
                              "flash_attention_2 when flash-attn is installed on CUDA and dtype is bf16/fp16, else "
                              "sdpa. flash_attention_2 without flash-attn, or with fp32, falls back to sdpa with a "
                              "warning."}),
                "quantization": (list(QUANTIZATIONS), {"default": "none", "tooltip": "Load the language model "
                                 "of a dense Qwen3-VL (2B-32B) or Qwen3.5 (0.8B-27B) in 8-bit or 4-bit with bitsandbytes (pip "
                                 "install bitsandbytes) to save memory; the vision tower and output head stay in full "
                                 "precision. Refused for MoE models (30B-A3B, 235B-A22B, Qwen3.5 35B-A3B and larger: "
                                 "bitsandbytes leaves their experts unquantized; use their FP8/AWQ/GPTQ checkpoints) and for folders that are "
                                 "already quantized (FP8, AWQ, GPTQ: leave none, they load with their own)."}),
                "device": (list(DEVICES), {"default": "auto", "tooltip": "Where to run. auto: ComfyUI's device. "
                           "multi-gpu: spread the model over every GPU (accelerate device_map=auto)."}),
                "keep_loaded": ("BOOLEAN", {"default": True, "tooltip": "Keep the model in memory between runs. "
                                "Off: it is freed after each generation and reloaded next time."}),
            },
            "optional": {
                "model_path": ("STRING", {"default": "", "tooltip": "An absolute folder of a Qwen3-VL or "
                               "Qwen3.5 model. "
                               "When set, it is used instead of the model list."}),
                "trust_remote_code": ("BOOLEAN", {"default": False, "tooltip": "Run Python code shipped in the "
                                      "model folder. Qwen3-VL and Qwen3.5 never need it; leave off unless you trust the "
                                      "folder's author (a warning is logged when on)."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, model):
        """Taking ``model`` here makes ComfyUI skip its own check that the value is in the folder list, so that
        model_path can override it and a workflow from another machine (other folder names, or an empty
        models/LLM) still runs. The folder is checked when the node runs: a missing one is an error that
        lists the folders found."""
        if not isinstance(model, str):
            return f"expected a model folder name, got {type(model).__name__}"
        return True

    def load(self, model, dtype, attention, quantization, device, keep_loaded, model_path="",
             trust_remote_code=False):
        chosen, name = (model_path.strip(), "model_path") if model_path and model_path.strip() else (model, "model")
        comfy.install_hooks()
        if device == "auto":
            device = comfy.default_device()
        if chosen == comfy.NO_MODELS:
            chosen = ""
        bundle = load_model(chosen, comfy.llm_dirs(), dtype=dtype, attention=attention,
                            quantization=quantization, device=device, keep_loaded=keep_loaded, input_name=name,
                            trust_remote_code=trust_remote_code)
        return (bundle,)
