"""What bitsandbytes 8-/4-bit would quantize in a Qwen3-VL, counted on the meta device (no weights).

bitsandbytes replaces ``nn.Linear`` modules only (outside the pack's skip list, ``model.visual`` and
``lm_head``). Qwen3-VL MoE stores its experts as fused 3-D parameters, which stay in full precision.
``tests/assets/qwen3_vl_30b_a3b_config.json`` is the public ``config.json`` of Qwen/Qwen3-VL-30B-A3B-Instruct.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
REAL_30B_A3B = ASSETS / "qwen3_vl_30b_a3b_config.json"
# Qwen3.5-35B-A3B's config.json values (the same architecture as Qwen3.6-35B-A3B), see tests/assets/README.md.
REAL_QWEN35_35B_A3B = ASSETS / "qwen3_5_35b_a3b_config.json"
SKIP_MODULES = ("model.visual", "lm_head")  # as loaders.options.QUANT_SKIP_MODULES
GIB = 1024 ** 3


@dataclass(frozen=True)
class QuantShare:
    quantized: int  # parameters bitsandbytes would quantize (nn.Linear weights outside the skip list)
    total: int

    @property
    def fraction(self) -> float:
        return self.quantized / self.total

    def gib(self, bits: int) -> float:
        """Weight memory with the quantized part at ``bits`` per weight and the rest in bf16 (scales ignored)."""
        return (self.quantized * bits / 8 + (self.total - self.quantized) * 2) / GIB


def _skipped(name: str) -> bool:
    return any(name == s or name.startswith(s + ".") for s in SKIP_MODULES)


def count_share(model) -> QuantShare:
    import torch

    quantized = sum(m.weight.numel() for name, m in model.named_modules()
                    if isinstance(m, torch.nn.Linear) and not _skipped(name))
    return QuantShare(quantized, sum(p.numel() for p in model.parameters()))


def meta_model(config: dict):
    """A Qwen3-VL (dense or MoE, from ``model_type``) built on the meta device from a config.json dict."""
    import torch
    import transformers

    config = {k: v for k, v in config.items() if k != "architectures"}
    cfg_cls, cls = {
        "qwen3_vl": ("Qwen3VLConfig", "Qwen3VLForConditionalGeneration"),
        "qwen3_vl_moe": ("Qwen3VLMoeConfig", "Qwen3VLMoeForConditionalGeneration"),
        "qwen3_5_moe": ("Qwen3_5MoeConfig", "Qwen3_5MoeForConditionalGeneration"),
    }[config["model_type"]]
    cfg_cls, cls = getattr(transformers, cfg_cls), getattr(transformers, cls)
    with torch.device("meta"):
        return cls(cfg_cls(**config))


def real_30b_a3b_config(**text_overrides) -> dict:
    config = json.loads(REAL_30B_A3B.read_text(encoding="utf-8"))
    config["text_config"].update(text_overrides)
    return config


def real_qwen35_35b_a3b_config() -> dict:
    return json.loads(REAL_QWEN35_35B_A3B.read_text(encoding="utf-8"))


if __name__ == "__main__":  # pragma: no cover - manual use: print the figures for the README
    import sys

    share = count_share(meta_model(real_30b_a3b_config()))
    sys.stdout.write(f"Qwen3-VL-30B-A3B: {share.quantized:,} of {share.total:,} parameters quantized "
                     f"({share.fraction:.1%}); bf16 {share.gib(16):.1f} GiB, 8-bit {share.gib(8):.1f} GiB, "
                     f"4-bit {share.gib(4):.1f} GiB\n")
