"""Text helpers: thinking split (and answers cut off while thinking), collapsing vision pad runs for ``info``."""

from __future__ import annotations

import re

from .errors import InputError

_PAD_RUN = re.compile(r"(<\|(?:image|video|vision)_pad\|>)(?:\1)+")
IM_START = "<|im_start|>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


def prompt_opens_think(rendered_prompt: str) -> bool:
    """Whether the model starts answering inside an open ``<think>`` block.

    Qwen3-VL-*-Thinking's chat template ends the generation prompt with ``<|im_start|>assistant\n<think>\n``,
    so the model's own output is ``reasoning</think>answer`` (no opening tag). Contract: ``rendered_prompt``
    is the whole prompt as the model sees it (special tokens kept); only the last turn counts (the text after
    the last ``<|im_start|>``), so a ``<think>`` typed in an earlier message does not count. True when that
    turn holds a ``<think>`` with no ``</think>`` after it. Engines that only get the output (e.g. a server)
    can pass the prompt they rendered or ``False``.
    """
    turn = rendered_prompt.rsplit(IM_START, 1)[-1]
    return turn.rfind(THINK_OPEN) > turn.rfind(THINK_CLOSE)


def split_thinking(text: str, opened: bool = False) -> tuple[str, str]:
    """Split a decoded answer into ``(thinking, answer)``, both stripped.

    ``opened`` (see :func:`prompt_opens_think`): the prompt already opened ``<think>``. Handles
    ``<think>...</think>answer`` and, with or without ``opened``, ``reasoning</think>answer``. Without any
    ``</think>`` the output stopped while thinking when ``opened`` is True or the output opened ``<think>``
    itself: everything after that opening is thinking and the answer is empty (or what came before the tag).
    Otherwise (an Instruct model) everything is the answer. :func:`ends_in_thinking` tells the caller whether
    the answer was cut off.
    """
    if THINK_CLOSE in text:
        head, _, answer = text.partition(THINK_CLOSE)
        thinking = head.split(THINK_OPEN, 1)[1] if THINK_OPEN in head else head
        return thinking.strip(), answer.strip()
    if THINK_OPEN in text:
        before, _, thinking = text.partition(THINK_OPEN)
        return thinking.strip(), before.strip()
    if opened:
        return text.strip(), ""
    return "", text.strip()


def ends_in_thinking(text: str, opened: bool = False) -> bool:
    """Whether the output stopped inside a ``<think>`` block, i.e. before its answer (usually because
    max_new_tokens ran out). ``opened`` as in :func:`split_thinking`: the last tag of the output decides,
    and with no tag at all the prompt's open ``<think>`` does."""
    last_open, last_close = text.rfind(THINK_OPEN), text.rfind(THINK_CLOSE)
    if last_open < 0 and last_close < 0:
        return opened
    return last_open > last_close


def cut_off_note(new_tokens: int, max_new_tokens: int | None = None) -> str:
    """One line for ``info`` when the answer was cut off while the model was still thinking."""
    limit = f" (max_new_tokens {max_new_tokens})" if max_new_tokens else ""
    return (f"answer cut off: the model was still thinking after {new_tokens} generated tokens{limit}, so text is "
            f"empty and the reasoning so far is in thinking. Raise max_new_tokens (Qwen suggests up to 40960 for "
            f"Thinking models).")


def check_answers_complete(results, max_new_tokens: int, what: str = "image") -> None:
    """Refuse results whose answer was cut off while thinking (``answer_cut_off``): their draft reasoning
    must not be taken for an answer (boxes parsed from it, captions written from it)."""
    cut = [i for i, r in enumerate(results) if getattr(r, "answer_cut_off", False)]
    if not cut:
        return
    which = f"{what} {cut[0] + 1}" if len(results) > 1 else f"the {what}"
    more = f" (and {len(cut) - 1} more of {len(results)})" if len(cut) > 1 else ""
    raise InputError("max_new_tokens", f"the model was still thinking after {max_new_tokens} tokens for {which}"
                     f"{more}, so there is no answer yet (its draft reasoning is not used).",
                     "Raise max_new_tokens: Thinking models reason before they answer (Qwen suggests up to 40960); "
                     "or use an Instruct model.")


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
    if getattr(result, "answer_cut_off", False):
        lines.append(cut_off_note(result.new_tokens, getattr(options, "max_new_tokens", None)))
    lines.extend(getattr(result, "notes", None) or ())
    if model_name:
        lines.append(f"model: {model_name}")
    if options is not None:
        sampling = ("greedy" if not options.do_sample else
                    f"temperature {options.temperature}, top_p {options.top_p}, top_k {options.top_k}")
        lines.append(f"preset: {options.preset} ({sampling}, repetition_penalty {options.repetition_penalty}, "
                     f"presence_penalty {options.presence_penalty}, seed {options.seed})")
        lines.append(f"thinking: {getattr(options, 'thinking', 'auto')}")
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
