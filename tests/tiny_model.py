"""Build a tiny random-weight Qwen3-VL model folder, offline, in about a second.

The folder has everything a real Qwen3-VL download has (``config.json``, safetensors weights,
``generation_config.json``, tokenizer files, image/video processor configs and Qwen3-VL's chat
template), so the pack's real code path (``from_pretrained`` -> processor -> ``generate``) runs on
it. Sizes follow SPEC section 9. Random weights give random text: never assert on wording.

Usage::

    from tests.tiny_model import build_tiny_model
    path = build_tiny_model("/tmp/tiny", family="dense")   # or family="moe"; thinking=True: Thinking template
"""

from __future__ import annotations

import inspect
import json
import os
import tempfile
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
CHAT_TEMPLATE_FILE = ASSETS / "qwen3_vl_chat_template.jinja"

# Qwen's added tokens, in Qwen's order (ids follow the trained vocabulary).
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]
PLAIN_ADDED_TOKENS = [
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
    "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>",
    "<think>", "</think>",
]

# Image budget for tests: 64x64 .. 512x512 pixels (4 .. 256 visual tokens of 32x32).
IMAGE_MIN_PIXELS = 64 * 64
IMAGE_MAX_PIXELS = 512 * 512
VIDEO_MIN_PIXELS = 32 * 32
VIDEO_MAX_PIXELS = 256 * 256 * 8

_TRAINING_TEXT = """\
Describe this image. What is in the picture? A cat sits on a red car in the sun.
The quick brown fox jumps over the lazy dog. Find every cat and return boxes as JSON.
[{"bbox_2d": [12, 34, 567, 890], "label": "cat"}, {"point_2d": [100, 200], "label": "dog"}]
A photo of a person holding an umbrella on a rainy street, at night, with neon lights.
Caption: a woman, red dress, smiling, outdoors, garden, flowers, high quality, detailed.
<think>Let me look at the image carefully. I see two objects.</think> The answer is two.
Video: at 3.5 seconds a man opens the door; then the dog runs out. 0123456789 %.,;:!?()
"""


def _train_bpe(vocab_size: int = 1000):
    """Train a byte-level BPE with Qwen's pre-tokenizer on a little local text."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    pattern = (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
        r"|\s*[\r\n]+|\s+(?!\S)|\s+"
    )
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    tok.train_from_iterator([_TRAINING_TEXT] * 4, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return model["vocab"], merges


_GENERATION_PROMPT = """{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}"""


def thinking_chat_template(instruct_template: str) -> str:
    """Qwen3-VL-*-Thinking's template (SPEC 3b): the Instruct one plus ``<think>\\n`` after the generation
    prompt's ``<|im_start|>assistant\\n``, so the model answers ``reasoning</think>answer``."""
    if _GENERATION_PROMPT not in instruct_template:
        raise ValueError("the Instruct chat template has no generation prompt block to extend")
    thinking = _GENERATION_PROMPT.replace("assistant\\n' }}", "assistant\\n<think>\\n' }}")
    return instruct_template.replace(_GENERATION_PROMPT, thinking)


def build_tokenizer(thinking: bool = False, template: str | None = None, id_shift: int = 0):
    """A Qwen2Tokenizer with Qwen's special tokens and Qwen3-VL's chat template (Thinking's with ``thinking``),
    or ``template`` when given (Qwen3.5's, see tests/tiny_qwen35.py). ``id_shift`` reserved tokens go before
    Qwen's special tokens, so their ids differ from the Qwen3-VL fixture's."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    vocab, merges = _train_bpe()
    if "vocab" in inspect.signature(Qwen2Tokenizer.__init__).parameters:  # transformers 5.x
        tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", errors="replace")
    else:  # transformers 4.57: the fast tokenizer reads vocab.json + merges.txt
        from transformers import Qwen2TokenizerFast

        with tempfile.TemporaryDirectory() as tmp:
            vocab_file, merges_file = Path(tmp) / "vocab.json", Path(tmp) / "merges.txt"
            vocab_file.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
            merges_file.write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n",
                                   encoding="utf-8")
            tokenizer = Qwen2TokenizerFast(vocab_file=str(vocab_file), merges_file=str(merges_file),
                                           unk_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    reserved = [f"<|reserved_{i}|>" for i in range(id_shift)]
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in reserved + SPECIAL_TOKENS])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in PLAIN_ADDED_TOKENS])
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|endoftext|>"
    if template is None:
        template = CHAT_TEMPLATE_FILE.read_text(encoding="utf-8")
        template = thinking_chat_template(template) if thinking else template
    tokenizer.chat_template = template
    return tokenizer


def _config_takes_rope_parameters() -> bool:
    """transformers 5.x text configs take ``rope_parameters``; 4.57 reads ``rope_scaling`` + ``rope_theta``."""
    from transformers import Qwen3VLTextConfig

    return "rope_parameters" in inspect.signature(Qwen3VLTextConfig.__init__).parameters


def _image_processor_keeps_min_pixels() -> bool:
    """4.57's image processor keeps its own ``min_pixels``/``max_pixels`` (which win over ``size``); 5.x has none."""
    from transformers import Qwen2VLImageProcessor

    return hasattr(Qwen2VLImageProcessor(patch_size=16, merge_size=2), "min_pixels")


# vLLM's CPU attention refuses head_dim 16 (SPEC section 10): the served-engine tier uses head_dim 64.
SIZES = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                 mrope_section=[4, 2, 2]),
    "vllm": dict(hidden_size=128, intermediate_size=256, num_attention_heads=2, num_key_value_heads=1, head_dim=64,
                 mrope_section=[16, 8, 8]),
    # llama.cpp asserts when the text stack has no more layers than DeepStack layers (SPEC section 11).
    "gguf": dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                 mrope_section=[4, 2, 2], num_hidden_layers=3),
}


def build_config(tokenizer, family: str = "dense", size: str = "tiny"):
    """A tiny Qwen3-VL config whose special token ids match ``tokenizer`` (``size`` "tiny" or "vllm")."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab_size = ((len(tokenizer) + 63) // 64) * 64 + 64
    dims = dict(SIZES[size])
    mrope_section = dims.pop("mrope_section")
    layers = dims.pop("num_hidden_layers", 2)
    text = dict(
        vocab_size=vocab_size, num_hidden_layers=layers, max_position_embeddings=32768,
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=False, **dims,
    )
    rope = {"rope_type": "default", "mrope_section": mrope_section, "mrope_interleaved": True}
    if _config_takes_rope_parameters():
        text["rope_parameters"] = {**rope, "rope_theta": 5e6}
    else:  # 4.57 reads rope_scaling + rope_theta
        text.update(rope_scaling=rope, rope_theta=5e6)
    vision = dict(
        depth=2, hidden_size=64, intermediate_size=128, num_heads=4, patch_size=16,
        spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=dims["hidden_size"],
        num_position_embeddings=2304, deepstack_visual_indexes=[0, 1],
    )
    top = dict(
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    if family == "dense":
        from transformers import Qwen3VLConfig

        return Qwen3VLConfig(text_config=text, vision_config=vision, **top)
    if family == "moe":
        from transformers import Qwen3VLMoeConfig

        text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                    decoder_sparse_step=1, mlp_only_layers=[])
        return Qwen3VLMoeConfig(text_config=text, vision_config=vision, **top)
    raise ValueError(f"family must be 'dense' or 'moe', got {family!r}")


def build_processor(tokenizer):
    """The real Qwen3VLProcessor with small pixel budgets so tests stay fast."""
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(
        patch_size=16, temporal_patch_size=2, merge_size=2,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
        size={"shortest_edge": IMAGE_MIN_PIXELS, "longest_edge": IMAGE_MAX_PIXELS},
        **({"min_pixels": IMAGE_MIN_PIXELS, "max_pixels": IMAGE_MAX_PIXELS} if _image_processor_keeps_min_pixels() else {}),
    )
    video_processor = Qwen3VLVideoProcessor(
        patch_size=16, temporal_patch_size=2, merge_size=2,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
        size={"shortest_edge": VIDEO_MIN_PIXELS, "longest_edge": VIDEO_MAX_PIXELS},
        fps=2, min_frames=2, max_frames=64, do_sample_frames=True,
    )
    return Qwen3VLProcessor(
        image_processor=image_processor, video_processor=video_processor, tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )


def build_tiny_model(path: str | os.PathLike, family: str = "dense", seed: int = 0, size: str = "tiny",
                     thinking: bool = False) -> Path:
    """Write a tiny random-weight Qwen3-VL (``family`` 'dense' or 'moe') to ``path``; return it.

    ``size="vllm"`` gives the slightly larger shape that vLLM's CPU attention accepts (head_dim 64);
    ``size="gguf"`` the tiny shape with 3 text layers, which llama.cpp needs for the 2 DeepStack layers.
    ``thinking``: with Qwen3-VL-*-Thinking's chat template (the generation prompt opens ``<think>``).
    ``family`` 'qwen3_5' / 'qwen3_5_moe': a tiny Qwen3.5 (tests/tiny_qwen35.py; transformers >= 5.2).
    """
    if family in ("qwen3_5", "qwen3_5_moe"):
        if __package__:
            from .tiny_qwen35 import build_tiny_qwen35
        else:  # run as a script: python tests/tiny_model.py DIR qwen3_5
            from tiny_qwen35 import build_tiny_qwen35

        return build_tiny_qwen35(path, moe=family == "qwen3_5_moe", seed=seed, size=size)
    from transformers import Qwen3VLForConditionalGeneration, Qwen3VLMoeForConditionalGeneration

    tokenizer = build_tokenizer(thinking)
    config = build_config(tokenizer, family, size)
    cls = Qwen3VLForConditionalGeneration if family == "dense" else Qwen3VLMoeForConditionalGeneration
    return save_seeded_model(
        path, cls, config, tokenizer, seed, temperature=0.7, top_p=0.8,
        # an Instruct stand-in never writes <think> tags (its random weights otherwise sometimes would)
        suppress_tokens=None if thinking else tokenizer.convert_tokens_to_ids(["<think>", "</think>"]))


def save_seeded_model(path, cls, config, tokenizer, seed: int, **sampling) -> Path:
    """``cls(config)`` with weights drawn under ``seed`` (the global RNG is left as it was), its generation config
    (the tokenizer's ids, do_sample, top_k 20 and ``sampling``) and the processor, saved in ``path``."""
    import torch
    from transformers import GenerationConfig

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = cls(config).eval()
    finally:
        torch.random.set_rng_state(state)
    model.generation_config = GenerationConfig(
        bos_token_id=config.text_config.bos_token_id,
        eos_token_id=[tokenizer.convert_tokens_to_ids("<|im_end|>"),
                      tokenizer.convert_tokens_to_ids("<|endoftext|>")],
        pad_token_id=tokenizer.pad_token_id,
        do_sample=True, top_k=20, repetition_penalty=1.0, **sampling,
    )
    model.save_pretrained(path, safe_serialization=True)
    build_processor(tokenizer).save_pretrained(path)
    return path


if __name__ == "__main__":  # pragma: no cover - manual use
    import sys

    out = build_tiny_model(sys.argv[1] if len(sys.argv) > 1 else "tiny-qwen3vl",
                           sys.argv[2] if len(sys.argv) > 2 else "dense",
                           size=next((s for s in ("vllm", "gguf") if s in sys.argv[3:]), "tiny"), thinking="thinking" in sys.argv[3:])
    sys.stdout.write(f"{out}\n")
