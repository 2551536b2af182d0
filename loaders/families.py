"""Model families are data (STYLE rule 15): one row per ``config.json`` ``model_type`` the pack runs.

Code asks this table (the class to load, MoE or not, whether the chat template has a thinking switch, the oldest
transformers that runs it, a hybrid text stack) instead of branching on family names. A new
family is a new row here and a fixture in ``tests/tiny_model.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..utils.errors import ModelLoadError


@dataclass(frozen=True)
class Family:
    model_type: str
    class_name: str  # a transformers class reached through AutoModelForImageTextToText (never AutoModelForCausalLM)
    label: str  # what people call it (errors, logs)
    moe: bool  # experts are fused 3-D parameters: bitsandbytes 8-/4-bit barely shrinks them
    thinking_switch: bool  # its official chat template takes enable_thinking
    min_transformers: tuple[int, int]  # oldest transformers (major, minor) that has the class
    hybrid: bool  # Gated-DeltaNet linear-attention layers next to full attention (Qwen3.5)
    bnb_note: str = ""  # for MoE rows: what bitsandbytes would quantize, counted on the real config (meta device)


FAMILY_TABLE: dict[str, Family] = {f.model_type: f for f in (
    Family("qwen3_vl", "Qwen3VLForConditionalGeneration", "Qwen3-VL", moe=False, thinking_switch=False,
           min_transformers=(4, 57), hybrid=False),
    Family("qwen3_vl_moe", "Qwen3VLMoeForConditionalGeneration", "Qwen3-VL MoE", moe=True, thinking_switch=False,
           min_transformers=(4, 57), hybrid=False,
           bnb_note="for 30B-A3B only 2.9 % of the weights would be quantized: about 56.6 GiB in '4-bit' against "
                    "57.9 GiB in bf16"),
    Family("qwen3_5", "Qwen3_5ForConditionalGeneration", "Qwen3.5", moe=False, thinking_switch=True,
           min_transformers=(5, 2), hybrid=True),
    Family("qwen3_5_moe", "Qwen3_5MoeForConditionalGeneration", "Qwen3.5 MoE", moe=True, thinking_switch=True,
           min_transformers=(5, 2), hybrid=True,
           bnb_note="for 35B-A3B only 4.0 % of the weights would be quantized: about 63.4 GiB in '4-bit' against "
                    "65.4 GiB in bf16"),
)}

# Text-only conversions of these families: no vision tower, so nothing this pack does works on them.
TEXT_ONLY_TYPES = {"qwen3_vl_text": "qwen3_vl", "qwen3_vl_moe_text": "qwen3_vl_moe", "qwen3_5_text": "qwen3_5",
                   "qwen3_5_moe_text": "qwen3_5_moe"}


def family(model_type: str) -> Family:
    """The row for ``model_type`` (KeyError for an unknown one: callers check with :func:`known` first)."""
    return FAMILY_TABLE[model_type]


def known_types() -> str:
    return ", ".join(repr(t) for t in FAMILY_TABLE)


def transformers_version() -> tuple[int, int]:
    import transformers

    major, minor = (transformers.__version__.split(".") + ["0"])[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def check_transformers(fam: Family, input_name: str = "model") -> None:
    """Refuse a family the installed transformers cannot run, naming the version to install."""
    have = transformers_version()
    if have >= fam.min_transformers:
        return
    import transformers

    need = ".".join(map(str, fam.min_transformers))
    raise ModelLoadError(input_name, f"{fam.label} (model_type {fam.model_type!r}) needs transformers >= {need}; "
                         f"this Python has transformers {transformers.__version__}, which has no "
                         f"{fam.class_name}.",
                         f"Upgrade with ComfyUI's own Python: pip install \"transformers>={need}\" (then restart "
                         "ComfyUI), or serve the model (vLLM >= 0.17) and use Qwen3-VL Server Model.")


def template_has_thinking_switch(template: str | None) -> bool:
    """Whether a chat template reads ``enable_thinking`` (Qwen3.5's does; Qwen3-VL Instruct/Thinking's do not)."""
    return bool(template) and "enable_thinking" in template
