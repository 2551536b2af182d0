"""Turn the loader's dtype / attention / quantization / device choices into from_pretrained args."""

from __future__ import annotations

import importlib.util
import logging

import torch

from ..utils.errors import InputError

logger = logging.getLogger(__name__)

DTYPES = ("auto", "bf16", "fp16", "fp32")
ATTENTIONS = ("auto", "sdpa", "flash_attention_2", "eager")
QUANTIZATIONS = ("none", "8-bit", "4-bit")
DEVICES = ("auto", "cuda", "cpu", "mps", "multi-gpu")
_TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# Modules kept in full precision when quantizing: the vision tower and the output head.
QUANT_SKIP_MODULES = ["model.visual", "lm_head"]


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(device: str) -> str:
    """``auto`` -> cuda, mps or cpu (what exists); ``multi-gpu`` -> ``auto`` (accelerate device_map)."""
    if device not in DEVICES:
        raise InputError("device", f"unknown device {device!r}.", f"Choose one of {', '.join(DEVICES)}.")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    if device in ("cuda", "multi-gpu") and not torch.cuda.is_available():
        raise InputError("device", f"{device!r} asked for, but torch sees no CUDA GPU.",
                         "Choose cpu or auto, or install a CUDA build of torch.")
    if device == "mps" and not _mps_available():
        raise InputError("device", "'mps' asked for, but this machine has no Apple GPU.", "Choose cpu or auto.")
    return "auto" if device == "multi-gpu" else device


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto`` -> bf16 on CUDA that supports it, fp16 on other GPUs, fp32 on CPU."""
    if dtype not in DTYPES:
        raise InputError("dtype", f"unknown dtype {dtype!r}.", f"Choose one of {', '.join(DTYPES)}.")
    if dtype != "auto":
        return dtype
    if device in ("cuda", "auto"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp16" if device == "mps" else "fp32"


def torch_dtype(name: str) -> torch.dtype:
    return _TORCH_DTYPES[name]


def flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def resolve_attention(attention: str, device: str) -> str:
    """``auto`` -> flash_attention_2 on CUDA when flash-attn is installed, else sdpa.

    flash_attention_2 asked for but not usable -> sdpa, with one logged warning.
    """
    if attention not in ATTENTIONS:
        raise InputError("attention", f"unknown attention {attention!r}.", f"Choose one of {', '.join(ATTENTIONS)}.")
    gpu = device in ("cuda", "auto")
    if attention == "auto":
        return "flash_attention_2" if gpu and flash_attn_available() else "sdpa"
    if attention == "flash_attention_2" and not (gpu and flash_attn_available()):
        why = "flash-attn is not installed" if not flash_attn_available() else f"it needs CUDA (device {device})"
        logger.warning("attention: flash_attention_2 asked for but %s; using sdpa instead "
                       "(pip install flash-attn on a CUDA machine to use it).", why)
        return "sdpa"
    return attention


def quantization_config(quantization: str, dtype: str):
    """A ``BitsAndBytesConfig`` for 8-/4-bit (vision tower and lm_head stay unquantized), or None."""
    if quantization not in QUANTIZATIONS:
        raise InputError("quantization", f"unknown quantization {quantization!r}.",
                         f"Choose one of {', '.join(QUANTIZATIONS)}.")
    if quantization == "none":
        return None
    if importlib.util.find_spec("bitsandbytes") is None:
        raise InputError("quantization", f"{quantization} needs the bitsandbytes package, which is not installed.",
                         "Run `pip install bitsandbytes` in ComfyUI's Python, or set quantization to none.")
    from transformers import BitsAndBytesConfig

    if quantization == "8-bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=list(QUANT_SKIP_MODULES))
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch_dtype(dtype),
                              llm_int8_skip_modules=list(QUANT_SKIP_MODULES))
