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
FLASH_DTYPES = ("bf16", "fp16")  # flash-attn kernels take half precision only
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


def cuda_bf16_native(all_devices: bool = False) -> bool:
    """Whether the CUDA GPU (every visible one with ``all_devices``) computes bf16 natively.

    ``torch.cuda.is_bf16_supported()`` also says True for GPUs that only emulate bf16 (T4, RTX 20xx:
    compute capability < 8.0), where it is slow; native bf16 needs Ampere or newer (8.0+). ROCm GPUs
    count as native, as torch counts them.
    """
    if not torch.cuda.is_available():
        return False
    if getattr(torch.version, "hip", None):
        return True
    if all_devices:
        return all(torch.cuda.get_device_capability(i)[0] >= 8 for i in range(torch.cuda.device_count()))
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch < 2.3 has no including_emulation (and did not count emulation)
        return torch.cuda.get_device_capability()[0] >= 8


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto`` -> bf16 on CUDA GPUs with native bf16 (compute capability 8.0+), fp16 on other GPUs
    (T4, RTX 20xx, MPS), fp32 on CPU. An explicit bf16 on a GPU that only emulates it is kept, with a warning."""
    if dtype not in DTYPES:
        raise InputError("dtype", f"unknown dtype {dtype!r}.", f"Choose one of {', '.join(DTYPES)}.")
    gpu = device in ("cuda", "auto") and torch.cuda.is_available()
    if dtype == "bf16" and gpu and not cuda_bf16_native(all_devices=device == "auto"):
        logger.warning("dtype: bf16 asked for, but this GPU has no native bf16 (compute capability < 8.0): it "
                       "is emulated and slow. fp16 (or dtype auto) is faster here.")
    if dtype != "auto":
        return dtype
    if device in ("cuda", "auto"):
        return "bf16" if cuda_bf16_native(all_devices=device == "auto") else "fp16"
    return "fp16" if device == "mps" else "fp32"


def torch_dtype(name: str) -> torch.dtype:
    return _TORCH_DTYPES[name]


def flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def resolve_attention(attention: str, device: str, dtype: str = "bf16") -> str:
    """``auto`` -> flash_attention_2 on CUDA when flash-attn is installed and the dtype is fp16/bf16, else sdpa.

    flash_attention_2 asked for but not usable (flash-attn missing, no CUDA, or fp32 weights, which
    flash-attn does not take) -> sdpa, with one logged warning.
    """
    if attention not in ATTENTIONS:
        raise InputError("attention", f"unknown attention {attention!r}.", f"Choose one of {', '.join(ATTENTIONS)}.")
    gpu = device in ("cuda", "auto")
    half = dtype in FLASH_DTYPES
    if attention == "auto":
        return "flash_attention_2" if gpu and half and flash_attn_available() else "sdpa"
    if attention == "flash_attention_2" and not (gpu and half and flash_attn_available()):
        if not flash_attn_available():
            why = "flash-attn is not installed (pip install flash-attn on a CUDA machine to use it)"
        elif not gpu:
            why = f"it needs CUDA (device {device})"
        else:
            why = f"flash-attn takes fp16/bf16 only, not {dtype} (set dtype to bf16 or fp16 to use it)"
        logger.warning("attention: flash_attention_2 asked for but %s; using sdpa instead.", why)
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


# bitsandbytes replaces nn.Linear only; Qwen3-VL MoE stores its experts as fused 3-D parameters, which it
# leaves in bf16. Counted on the meta device for the real Qwen3-VL-30B-A3B config (tests/quant_share.py):
# 0.91 B of 31.07 B parameters (2.9 %) would be quantized, so "4-bit" is ~56.6 GiB against 57.9 GiB in bf16.
# Qwen3.5-35B-A3B (tests/assets/qwen3_5_35b_a3b_config.json): 1.41 B of 35.11 B (4.0 %), ~63.4 against 65.4 GiB.
MOE_QUANT_ADVICE = ("For Qwen3-VL / Qwen3.5 MoE use instead: the official FP8 checkpoint (e.g. Qwen/Qwen3-VL-30B-A3B-"
                    "Instruct-FP8 or Qwen/Qwen3.5-35B-A3B-FP8; needs an Ada/Hopper GPU, compute capability 8.9+), "
                    "an AWQ or GPTQ checkpoint "
                    "(each loads with its own quantization: set quantization to none), or a served engine (vLLM, "
                    "SGLang, llama.cpp) through the pack's served backend. Or pick a dense Qwen3-VL (2B-32B) or "
                    "Qwen3.5 (0.8B-27B), which 8-/4-bit does shrink.")


def check_quantization(quantization: str, family: str, own_quantization: str | None = None) -> None:
    """Refuse bitsandbytes 8-/4-bit where it cannot do what it says.

    - ``own_quantization`` (the ``quant_method`` of the folder's ``config.json`` ``quantization_config``,
      e.g. ``fp8``, ``awq``, ``gptq``, ``compressed-tensors``): the folder loads with its own quantization,
      and bitsandbytes on top of already quantized weights is refused.
    - a MoE ``family`` (``moe`` in families.FAMILY_TABLE: ``qwen3_vl_moe``, ``qwen3_5_moe``): the experts (96-97 %
      of the weights) are fused parameters that bitsandbytes does not quantize (it replaces ``nn.Linear`` only), so the model would barely shrink; refused with
      what works instead (:data:`MOE_QUANT_ADVICE`).
    """
    if quantization == "none" or quantization not in QUANTIZATIONS:  # unknown names: quantization_config says
        return
    if own_quantization:
        raise InputError("quantization", f"{quantization} (bitsandbytes) cannot be applied on top of this folder's "
                         f"own quantization ({own_quantization}, from the quantization_config in its config.json).",
                         "Set quantization to none: the folder then loads with its own quantization.")
    from .families import FAMILY_TABLE

    row = FAMILY_TABLE.get(family)
    if row is not None and row.moe:
        raise InputError("quantization", f"{quantization} (bitsandbytes) does not shrink {row.label} models: their "
                         f"experts are fused parameters that bitsandbytes leaves in full precision ({row.bnb_note}).",
                         MOE_QUANT_ADVICE)
