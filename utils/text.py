"""Text helpers: thinking split, collapsing vision pad runs for the ``info`` output."""

from __future__ import annotations

import re

_PAD_RUN = re.compile(r"(<\|(?:image|video|vision)_pad\|>)(?:\1)+")
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


def split_thinking(text: str) -> tuple[str, str]:
    """Split a decoded answer into ``(thinking, answer)``.

    Handles ``<think>...</think>answer`` and Thinking-model output whose ``<think>`` was part of the
    prompt (``...reasoning</think>answer``). Without ``</think>`` everything is the answer, unless an
    unclosed ``<think>`` shows the answer was cut off while thinking: then it is all thinking.
    """
    if THINK_CLOSE in text:
        head, _, answer = text.partition(THINK_CLOSE)
        thinking = head.split(THINK_OPEN, 1)[1] if THINK_OPEN in head else head
        return thinking.strip(), answer.strip()
    if THINK_OPEN in text:
        before, _, thinking = text.partition(THINK_OPEN)
        return thinking.strip(), before.strip()
    return "", text.strip()


def collapse_pad_runs(text: str) -> str:
    """``<|image_pad|><|image_pad|>...`` -> ``<|image_pad|>×N`` (for people reading a prompt)."""

    def repl(m: re.Match) -> str:
        token = m.group(1)
        return f"{token}×{len(m.group(0)) // len(token)}"

    return _PAD_RUN.sub(repl, text)


def format_info(result, options=None, model_name: str = "") -> str:
    """A readable report of one generation for the ``info`` output (debugging a graph)."""
    seconds = max(float(result.seconds), 1e-9)
    lines = []
    if model_name:
        lines.append(f"model: {model_name}")
    if options is not None:
        sampling = ("greedy" if not options.do_sample else
                    f"temperature {options.temperature}, top_p {options.top_p}, top_k {options.top_k}")
        lines.append(f"preset: {options.preset} ({sampling}, repetition_penalty {options.repetition_penalty}, "
                     f"presence_penalty {options.presence_penalty}, seed {options.seed})")
    lines.append(f"prompt tokens: {result.prompt_tokens}")
    lines.append(f"generated tokens: {result.new_tokens}")
    if result.visual_tokens:
        lines.append("visual tokens per image: " + ", ".join(str(n) for n in result.visual_tokens))
    if result.video_tokens:
        lines.append("visual tokens per video: " + ", ".join(str(n) for n in result.video_tokens))
    lines.append(f"time: {result.seconds:.2f} s, {result.new_tokens / seconds:.1f} tokens/s")
    lines.append("--- rendered prompt ---")
    lines.append(collapse_pad_runs(result.rendered_prompt))
    return "\n".join(lines)
