"""Qwen3VL_DownloadModel: the only node that reaches the network."""

from __future__ import annotations

from ..loaders.download import OFFICIAL_REPOS, download_model
from ..utils.errors import InputError
from . import comfy_services as comfy


class Qwen3VLDownloadModel:
    DESCRIPTION = ("Downloads an official Qwen3-VL / Qwen3.5 model from the Hugging Face Hub into the first LLM model folder (ComfyUI/models/LLM/<name> unless extra_model_paths.yaml lists LLM folders first) "
                   "(safetensors only, resumable; skipped when the folder is already complete). The only node "
                   "of this pack that uses the network. Connect model_path to the loader's model_path.")
    CATEGORY = "Qwen3-VL"
    FUNCTION = "download"
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("model_path",)
    OUTPUT_TOOLTIPS = ("The absolute folder of the downloaded model (for the loader's model_path input).",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "repo_id": (list(OFFICIAL_REPOS), {"default": OFFICIAL_REPOS[0], "tooltip": "An official "
                            "Qwen3-VL or Qwen3.5/3.6/3.8 repository. Qwen3-VL 2B/4B/8B and Qwen3.5 0.8B-9B fit one "
                            "consumer GPU in bf16 or 4-bit; 30B-A3B and 35B-A3B are MoE with 3B active parameters; "
                            "-FP8 folders need an Ada/Hopper GPU. Qwen3.5 needs transformers >= 5.2."}),
            },
            "optional": {
                "custom_repo_id": ("STRING", {"default": "", "tooltip": "Any other Qwen3-VL / Qwen3.5 repository "
                                   "(owner/name, e.g. a fine-tune); overrides repo_id when set."}),
                "revision": ("STRING", {"default": "", "tooltip": "A branch, tag or commit; empty = main."}),
            },
        }

    def download(self, repo_id, custom_repo_id="", revision=""):
        dirs = comfy.llm_dirs()
        if not dirs:
            raise InputError("repo_id", "no ComfyUI models/LLM folder is known here.",
                             "Run inside ComfyUI, or use huggingface-cli to download into a folder by hand.")
        name, chosen = ("custom_repo_id", custom_repo_id) if custom_repo_id.strip() else ("repo_id", repo_id)
        path = download_model(chosen, dirs[0], revision.strip() or None, input_name=name)
        return (str(path),)
