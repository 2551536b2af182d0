"""Tiny random-weight Qwen3.5 folders (dense ``qwen3_5`` and MoE ``qwen3_5_moe``), offline, in about a second.

Same tokenizer and processor as the Qwen3-VL fixtures (tests/tiny_model.py), with reserved tokens before Qwen's
special tokens so every special-token id differs from the Qwen3-VL fixture's (ids must come from the config/processor), and
Qwen3.5's real chat template (``tests/assets/qwen3_5_chat_template.jinja``, source in ``QWEN35_TEMPLATE_SOURCE``).
Text stack as the real models, scaled down (SPEC section 11): 4 layers, 3 Gated-DeltaNet linear-attention layers to
1 full-attention layer, partial rotary 0.5 with mrope_section [2, 1, 1]; a vision tower without DeepStack.
Needs transformers >= 5.2 (``HAS_QWEN35``). Random weights give random text: never assert on wording.

Usage::

    from tests.tiny_qwen35 import build_tiny_qwen35
    path = build_tiny_qwen35("/tmp/q35")               # moe=True: qwen3_5_moe; small_template=True: 0.8B's
"""

from __future__ import annotations

import os
from pathlib import Path

if __package__:
    from .tiny_model import SPECIAL_TOKENS, build_tokenizer, save_seeded_model
else:  # imported from tests/tiny_model.py run as a script
    from tiny_model import SPECIAL_TOKENS, build_tokenizer, save_seeded_model

ASSETS = Path(__file__).resolve().parent / "assets"
QWEN35_TEMPLATE_FILE = ASSETS / "qwen3_5_chat_template.jinja"
QWEN35_TEMPLATE_SOURCE = (
    "Qwen3.5's chat_template.jinja (Qwen/Qwen3.5-*, Apache-2.0): the text of tokenizer.chat_template embedded in "
    "unsloth's Qwen3.5-0.8B GGUF (base model https://huggingface.co/Qwen/Qwen3.5-0.8B), quoted in a public "
    "model_metadata API page, with the generation-prompt block of the larger Qwen3.5 sizes (think unless "
    "enable_thinking is false), as quoted verbatim from Qwen3.5-family chat_template.jinja files in two other "
    "public repositories. The 0.8B block (think only when enable_thinking is true) is SMALL_GENERATION_PROMPT."
)
LARGE_GENERATION_PROMPT = """    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\\n\\n</think>\\n\\n' }}
    {%- else %}
        {{- '<think>\\n' }}
    {%- endif %}"""
SMALL_GENERATION_PROMPT = """    {%- if enable_thinking is defined and enable_thinking is true %}
        {{- '<think>\\n' }}
    {%- else %}
        {{- '<think>\\n\\n</think>\\n\\n' }}
    {%- endif %}"""
ID_SHIFT = 37  # reserved tokens before Qwen's special tokens: other ids than the Qwen3-VL fixture's


def has_qwen35() -> bool:
    import transformers

    return hasattr(transformers, "Qwen3_5ForConditionalGeneration")


def chat_template(small: bool = False) -> str:
    """Qwen3.5's template: the larger sizes' (thinks unless told not to) or, with ``small``, Qwen3.5-0.8B's
    (answers directly unless ``enable_thinking=True``)."""
    template = QWEN35_TEMPLATE_FILE.read_text(encoding="utf-8")
    if LARGE_GENERATION_PROMPT not in template:
        raise ValueError("the Qwen3.5 chat template has no generation-prompt block to switch")
    return template.replace(LARGE_GENERATION_PROMPT, SMALL_GENERATION_PROMPT) if small else template


SIZES = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                 linear_key_head_dim=16, linear_value_head_dim=16, mrope_section=[2, 1, 1]),
    # vLLM's CPU attention refuses head_dim 16 (SPEC section 10)
    "vllm": dict(hidden_size=128, intermediate_size=256, num_attention_heads=2, num_key_value_heads=1, head_dim=64,
                 linear_key_head_dim=64, linear_value_head_dim=64, mrope_section=[8, 4, 4]),
}


def build_config(tokenizer, moe: bool = False, size: str = "tiny"):
    """A tiny Qwen3.5 config whose special-token ids match ``tokenizer``."""
    import transformers

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    dims = dict(SIZES[size])
    mrope_section = dims.pop("mrope_section")
    text = dict(
        vocab_size=((len(tokenizer) + 63) // 64) * 64 + 64, num_hidden_layers=4, max_position_embeddings=32768,
        layer_types=["linear_attention"] * 3 + ["full_attention"], linear_conv_kernel_dim=4,
        linear_num_key_heads=2, linear_num_value_heads=4,
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1e7, "partial_rotary_factor": 0.5,
                         "mrope_section": mrope_section, "mrope_interleaved": True}, **dims,
    )
    vision = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4, patch_size=16, spatial_merge_size=2,
                  temporal_patch_size=2, out_hidden_size=dims["hidden_size"], num_position_embeddings=2304)
    top = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
               vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
               tie_word_embeddings=False)
    if moe:
        text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                    shared_expert_intermediate_size=32)
        return transformers.Qwen3_5MoeConfig(text_config=text, vision_config=vision, **top)
    return transformers.Qwen3_5Config(text_config=text, vision_config=vision, **top)


def build_tiny_qwen35(path: str | os.PathLike, moe: bool = False, seed: int = 0, size: str = "tiny",
                      small_template: bool = False) -> Path:
    """Write a tiny random-weight Qwen3.5 (``moe``: Qwen3.5 MoE) to ``path``; return it."""
    import transformers

    if not has_qwen35():
        raise RuntimeError(f"transformers {transformers.__version__} has no Qwen3.5 (needs >= 5.2)")
    tokenizer = build_tokenizer(template=chat_template(small_template), id_shift=ID_SHIFT)
    config = build_config(tokenizer, moe, size)
    cls = transformers.Qwen3_5MoeForConditionalGeneration if moe else transformers.Qwen3_5ForConditionalGeneration
    return save_seeded_model(path, cls, config, tokenizer, seed, temperature=1.0, top_p=0.95)
