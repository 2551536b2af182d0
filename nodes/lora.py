"""Qwen3VL_LoraLoader: a QWEN3VL_MODEL + a PEFT LoRA adapter folder -> a QWEN3VL_MODEL with the adapter."""

from __future__ import annotations

from ..loaders.lora import MAX_STRENGTH, with_adapter
from ..loaders.lora_files import fingerprint, list_adapter_folders, resolve_adapter_path
from ..utils.errors import Qwen3VLError
from . import comfy_services as comfy
from .loader import MODEL_TYPE

NO_ADAPTERS = "(no LoRA adapter folder found in models/loras or models/LLM)"


class Qwen3VLLoraLoader:
    DESCRIPTION = ("Adds a LoRA adapter fine-tuned with ms-swift, LLaMA-Factory, unsloth or peft (a folder with "
                   "adapter_config.json and adapter_model.safetensors) to a Qwen3-VL model. Chain several. The base "
                   "weights stay loaded once: the adapter is added only while this model answers, so other nodes "
                   "using the plain model are unaffected. Adapters saved with another key layout (text-only "
                   "model.layers vs model.language_model.layers) are remapped; one that matches nothing here is "
                   "refused. Local models only: a served model loads adapters in the server (vLLM --lora-modules).")
    CATEGORY = "Qwen3-VL"
    FUNCTION = "apply"
    RETURN_TYPES = (MODEL_TYPE,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The same model with this adapter (and those before it); connect it wherever a Qwen3-VL "
                       "model goes. Generate's info names the adapters and how many modules each changes.",)

    @classmethod
    def INPUT_TYPES(cls):
        folders = list_adapter_folders(comfy.lora_dirs()) or [NO_ADAPTERS]
        return {
            "required": {
                "model": (MODEL_TYPE, {"tooltip": "From Qwen3-VL Model Loader (or another LoRA Loader)."}),
                "lora": (folders, {"tooltip": "An adapter folder (adapter_config.json + adapter_model.safetensors) "
                                              "in ComfyUI/models/loras or models/LLM (or their extra_model_paths.yaml "
                                              "entries), sub-folders included (ms-swift's output/vN-.../checkpoint-N)."}),
                "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": MAX_STRENGTH, "step": 0.05,
                                       "tooltip": "How much of the adapter: 1 as trained, 0 off (the base model's "
                                                  "answers exactly), 0.5 half, up to 2."}),
            },
            "optional": {
                "lora_path": ("STRING", {"default": "", "tooltip": "An absolute adapter folder. When set, it is used "
                                                                   "instead of the lora list."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, lora):
        """Like the model loader: a workflow from another machine may name a folder this one lacks; the folder is
        checked when the node runs (lora_path may replace it)."""
        if not isinstance(lora, str):
            return f"expected an adapter folder name, got {type(lora).__name__}"
        return True

    @classmethod
    def IS_CHANGED(cls, lora="", lora_path="", **kwargs):
        """Run again when the adapter's files change on disk (retrained into the same folder). ComfyUI passes the
        widget values only (no linked model)."""
        chosen = lora_path.strip() if lora_path and lora_path.strip() else lora
        try:
            return str(fingerprint(resolve_adapter_path(chosen, comfy.lora_dirs())))
        except (Qwen3VLError, OSError) as err:  # the run reports it with the input named
            return f"unreadable: {err}"

    def apply(self, model, lora, strength, lora_path=""):
        chosen, name = (lora_path.strip(), "lora_path") if lora_path and lora_path.strip() else (lora, "lora")
        if chosen == NO_ADAPTERS:
            chosen = ""
        return (with_adapter(model, chosen, comfy.lora_dirs(), strength, input_name=name),)
