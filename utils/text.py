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


def _opens_with_think(text: str) -> bool:
    return text.lstrip().startswith(THINK_OPEN)


def split_thinking(text: str, opened: bool | None = None) -> tuple[str, str]:
    """Split a decoded answer into ``(thinking, answer)``, both stripped.

    ``<think>`` counts as thinking only when the prompt opened it (``opened``, see :func:`prompt_opens_think`)
    or the answer starts with it; a ``<think>`` anywhere else is words of the answer (an Instruct model, or a
    random test model, may write the tag). So:

    - ``opened`` True: ``reasoning</think>answer``; without ``</think>`` it is all thinking (cut off).
    - the answer starts with ``<think>``: ``<think>reasoning</think>answer``; without ``</think>``, all thinking.
    - ``opened`` False (the prompt is known not to open it): everything else is the answer.
    - ``opened`` None (unknown: text from anywhere, a server that cannot tell): as False, except that a
      ``</think>`` still ends the reasoning (``reasoning</think>answer`` from a template that opened it).

    :func:`ends_in_thinking` tells the caller whether the answer was cut off.
    """
    if opened or _opens_with_think(text) or (opened is None and THINK_CLOSE in text):
        body = text.lstrip()
        if body.startswith(THINK_OPEN):
            body = body[len(THINK_OPEN):]
        if THINK_CLOSE not in body:
            return body.strip(), ""
        thinking, _, answer = body.partition(THINK_CLOSE)
        return thinking.strip(), answer.strip()
    return "", text.strip()


def ends_in_thinking(text: str, opened: bool | None = None) -> bool:
    """Whether the output stopped inside its reasoning, before any answer (usually because max_new_tokens ran
    out): the prompt opened ``<think>`` or the output starts with it, and no ``</think>`` follows.
    ``opened`` as in :func:`split_thinking`."""
    return bool(opened or _opens_with_think(text)) and THINK_CLOSE not in text


def cut_off_note(new_tokens: int, max_new_tokens: int | None = None) -> str:
    """One line for ``info`` when the answer was cut off while the model was still thinking."""
    limit = f" (max_new_tokens {max_new_tokens})" if max_new_tokens else ""
    return (f"answer cut off: the model was still thinking after {new_tokens} generated tokens{limit}, so text is "
            f"empty and the reasoning so far is in thinking. Raise max_new_tokens (Qwen suggests up to 40960 for "
            f"Thinking models).")


RAISE_TOKENS = ("Raise max_new_tokens: Thinking models reason before they answer (Qwen suggests up to 40960); or use "
                "an Instruct model.")


def cut_off_indices(results) -> list[int]:
    """Indices of the results whose answer was cut off while thinking (``answer_cut_off``)."""
    return [i for i, r in enumerate(results) if getattr(r, "answer_cut_off", False)]


def cut_off_message(cut: list[int], total: int, max_new_tokens: int, what: str = "image") -> str:
    """'image 2, 5 of 16: still thinking after N tokens, ...' naming the cut-off answers (1-based)."""
    which = ", ".join(str(i + 1) for i in cut)
    return (f"{what} {which} of {total}: the model was still thinking after {max_new_tokens} tokens, so there is no "
            f"answer for {'it' if len(cut) == 1 else 'them'} (its draft reasoning is not used). " + RAISE_TOKENS)


def complete_answers(results, max_new_tokens: int, what: str = "image") -> tuple[list[str], str]:
    """The answers to parse, ``""`` for each one cut off while thinking (its draft reasoning must not become
    boxes or points), and a note naming those (``""`` when none). Refused only when every answer was cut off."""
    cut = cut_off_indices(results)
    if cut and len(cut) == len(results):
        which = f"every {what} ({len(results)})" if len(results) > 1 else f"the {what}"
        raise InputError("max_new_tokens", f"the model was still thinking after {max_new_tokens} tokens for {which}, "
                         "so there is no answer yet (its draft reasoning is not used).", RAISE_TOKENS)
    texts = ["" if i in cut else r.text for i, r in enumerate(results)]
    return texts, cut_off_message(cut, len(results), max_new_tokens, what) if cut else ""


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
