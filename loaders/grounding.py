"""Grounding with Qwen3-VL: one grounding question per image, answered in one batched generate."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..utils.grounding import build_grounding_prompt, join_answers, parse_index
from ..utils.grounding_render import GroundingOutputs, grounding_outputs
from ..utils.images import check_image_batch, to_uint8_chw
from ..utils.messages import build_messages
from ..utils.presets import GenerationOptions
from ..utils.text import complete_answers
from .tasks import run_conversations

logger = logging.getLogger(__name__)


def ground(bundle, image, target: str, mode: str, options: GenerationOptions,
           label_filter: str = "", index: str = "", max_visual_tokens: int = 0,
           on_step: Callable[[int], bool | None] | None = None,
           on_text: Callable[[str, str], object] | None = None) -> tuple[GroundingOutputs, str]:
    """Ask Qwen3-VL to locate ``target`` in every image of the batch (one conversation per image).

    Returns the outputs (pixel boxes, mask, preview, JSON; Qwen3-VL's relative 0..1000 coordinates) and
    the answers as one string (``=== image N ===`` sections when the batch has several images). An image whose
    answer was cut off while thinking gets no boxes, and the string ends naming it; refused when all were.
    """
    prompt = build_grounding_prompt(target, mode)
    parse_index(index)  # refuse a bad index before spending time on generation
    image = check_image_batch(image, "image")
    frames = list(to_uint8_chw(image).unbind(0))
    conversations = [build_messages(prompt, [frame]) for frame in frames]
    results = run_conversations(bundle, conversations, options, max_visual_tokens=max_visual_tokens,
                                on_step=on_step, on_text=on_text)
    texts, cut_note = complete_answers(results, options.max_new_tokens, "image")  # no boxes from draft reasoning
    logger.debug("grounding answers: %s", texts)
    if cut_note:
        logger.warning("Grounding: %s", cut_note)
    text = join_answers(texts) + (f"\n(no boxes for {cut_note})" if cut_note else "")
    return grounding_outputs(image, texts, "qwen3", label_filter, index), text
