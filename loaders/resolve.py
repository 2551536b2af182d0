"""Find a Qwen3-VL model folder and check it before anything is loaded."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..utils.errors import ModelLoadError

logger = logging.getLogger(__name__)

FAMILIES = {
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "qwen3_vl_moe": "Qwen3VLMoeForConditionalGeneration",
}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def list_model_folders(search_dirs: list[str]) -> list[str]:
    """Names of sub-folders holding a ``config.json`` in any of ``search_dirs`` (sorted, unique)."""
    names: set[str] = set()
    for base in search_dirs:
        if not os.path.isdir(base):
            continue
        for entry in os.scandir(base):
            if entry.is_dir() and os.path.isfile(os.path.join(entry.path, "config.json")):
                names.add(entry.name)
    return sorted(names)


def resolve_model_path(name: str, search_dirs: list[str], input_name: str = "model") -> Path:
    """An absolute folder, or a folder name found in one of ``search_dirs`` (first match wins)."""
    name = (name or "").strip()
    if not name:
        raise ModelLoadError(input_name, f"no model chosen; {_folders_found(search_dirs)}.",
                             "Put a Qwen3-VL folder in ComfyUI/models/LLM/ and pick it, or give an "
                             "absolute folder in model_path.")
    candidate = Path(os.path.expanduser(name))
    if candidate.is_absolute():
        if not candidate.is_dir():
            raise ModelLoadError(input_name, f"folder {str(candidate)!r} does not exist.",
                                 "Check the path, or download the model into ComfyUI/models/LLM/.")
        return candidate.resolve()
    for base in search_dirs:
        path = Path(base) / name
        if path.is_dir():
            return path.resolve()
    raise ModelLoadError(input_name, f"no folder named {name!r} in the LLM model paths; "
                         f"{_folders_found(search_dirs)}.",
                         "Pick one of those, put the model folder in ComfyUI/models/LLM/, or give an absolute "
                         "folder in model_path (a workflow from another machine may name a folder you call "
                         "differently).")


def _folders_found(search_dirs: list[str]) -> str:
    """What is there, for an error: the model folders found and where they were looked for."""
    where = ", ".join(search_dirs) or "none registered"
    found = list_model_folders(search_dirs)
    shown = ", ".join(found[:20]) + (f" and {len(found) - 20} more" if len(found) > 20 else "")
    return f"folders found: {shown} (in {where})" if found else f"no model folder found (looked in {where})"


def read_family(path: Path, input_name: str = "model") -> str:
    """The ``model_type`` from ``config.json``: ``qwen3_vl`` or ``qwen3_vl_moe``."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(input_name, f"{str(path)!r} has no config.json.",
                             "Point at the folder of a Hugging Face Qwen3-VL download (it holds "
                             "config.json, *.safetensors, tokenizer and processor files).")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelLoadError(input_name, f"config.json in {str(path)!r} cannot be read ({err}).",
                             "Re-download the model; the file is damaged.") from err
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in FAMILIES:
        raise ModelLoadError(input_name, f"config.json says model_type {model_type!r}, which is not "
                             "Qwen3-VL (expected 'qwen3_vl' or 'qwen3_vl_moe').",
                             "Choose a Qwen3-VL model folder (dense 2B-32B or MoE 30B-A3B/235B-A22B).")
    return model_type


def read_own_quantization(path: Path) -> str | None:
    """The ``quant_method`` of the ``quantization_config`` in the folder's ``config.json`` (``fp8``, ``awq``,
    ``gptq``, ``compressed-tensors``, ...), or None for plain weights. Such folders load with their own
    quantization (transformers reads it from config.json); call after :func:`read_family`."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # read_family has already reported a damaged config.json
    quant = config.get("quantization_config") if isinstance(config, dict) else None
    if not isinstance(quant, dict) or not quant:
        return None
    return str(quant.get("quant_method") or quant.get("format") or "unknown method")


def check_weights(path: Path, input_name: str = "model") -> None:
    """Refuse folders whose weights are only pickle files (``.bin``/``.pt``): safetensors only."""
    files = [p.name for p in path.iterdir() if p.is_file()]
    if any(f.endswith(".safetensors") for f in files):
        return
    pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise ModelLoadError(input_name, f"{str(path)!r} has weights only as pickle files "
                             f"({', '.join(sorted(pickles)[:3])}); this pack loads safetensors only, "
                             "because pickle files can run code when loaded.",
                             "Download the safetensors version of the model (the official Qwen "
                             "repositories ship *.safetensors).")
    raise ModelLoadError(input_name, f"{str(path)!r} has no *.safetensors weights.",
                         "Finish or redo the download: the weight files are missing.")


def check_tokenizer_files(path: Path, input_name: str = "model") -> None:
    """The tokenizer must be there: without it transformers silently builds an empty vocabulary."""
    has_json = (path / "tokenizer.json").is_file()
    has_bpe = (path / "vocab.json").is_file() and (path / "merges.txt").is_file()
    if not (has_json or has_bpe):
        raise ModelLoadError(input_name, f"the processor/tokenizer files in {str(path)!r} cannot be loaded "
                             "(no tokenizer.json, nor vocab.json + merges.txt).",
                             "Copy the tokenizer files of the model into the folder (re-download it).")
