"""Tiny LoRA adapters made with peft on the tiny Qwen3-VL folders (tests and the real-ComfyUI workflow check).

peft initialises lora_B to zero (an adapter that changes nothing), so every LoRA matrix is set to random
values before saving. ``layout="text"`` rewrites the saved keys to the text-only layout (``model.layers.N``,
``visual.blocks.N``), as an adapter trained on the language model alone (or on an older transformers) has them.

Usage::

    python tests/tiny_lora.py MODEL_DIR OUT_DIR   # text+vision targets, wrapper layout
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
VISION_TARGETS = ["qkv", "attn.proj", "linear_fc1", "linear_fc2"]
ATTENTION_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def text_layout(key: str) -> str:
    """A wrapper-layout key as the text-only (old Qwen2-VL / causal-LM) layout writes it."""
    return key.replace("base_model.model.model.language_model.", "base_model.model.model.").replace(
        "base_model.model.model.visual.", "base_model.model.visual.")


def build_tiny_lora(model_dir: str | Path, out_dir: str | Path, targets: list[str] | None = None,
                    layout: str = "wrapper", seed: int = 0, r: int = 4, alpha: float = 8.0, std: float = 0.3,
                    use_rslora: bool = False, **config) -> Path:
    """Train nothing, but save what a trainer would: a peft LoRA folder with random non-zero A and B."""
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForImageTextToText

    out = Path(out_dir)
    model = AutoModelForImageTextToText.from_pretrained(str(model_dir), dtype=torch.float32) \
        if _major() >= 5 else AutoModelForImageTextToText.from_pretrained(str(model_dir), torch_dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, use_rslora=use_rslora,
                                                  target_modules=targets or TEXT_TARGETS, **config))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * std)
    peft_model.save_pretrained(str(out))
    if layout == "text":
        file = out / "adapter_model.safetensors"
        state = load_file(str(file))
        save_file({text_layout(k): v for k, v in state.items()}, str(file), metadata={"format": "pt"})
    elif layout != "wrapper":
        raise ValueError(f"layout must be 'wrapper' or 'text', got {layout!r}")
    return out


def edit_config(folder: Path, **changes) -> None:
    file = Path(folder) / "adapter_config.json"
    config = json.loads(file.read_text(encoding="utf-8"))
    config.update(changes)
    file.write_text(json.dumps(config), encoding="utf-8")


def _major() -> int:
    import transformers

    return int(transformers.__version__.split(".")[0])


if __name__ == "__main__":
    print(build_tiny_lora(sys.argv[1], sys.argv[2], TEXT_TARGETS + VISION_TARGETS))
