"""The generation engine shared by every node and the CLI.

Flow (as transformers' image-text-to-text pipeline): chat template -> processor -> generate ->
decode only the new tokens. Several conversations go in one left-padded batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..utils.errors import InputError
from ..utils.messages import collect_media
from ..utils.presets import GenerationOptions
from ..utils.sampling import PresencePenaltyLogitsProcessor, StepCallback
from ..utils.text import ends_in_thinking, prompt_opens_think, split_thinking
from .compat import pixel_budget_kwargs
from .families import template_has_thinking_switch

logger = logging.getLogger(__name__)


@dataclass
class GenerationResult:
    """One conversation's answer and what it cost."""

    text: str
    thinking: str
    raw_text: str
    token_ids: list[int]
    prompt_tokens: int
    rendered_prompt: str
    visual_tokens: list[int] = field(default_factory=list)
    video_tokens: list[int] = field(default_factory=list)
    seconds: float = 0.0
    completion_tokens: int | None = None  # served engines report a count, not the ids
    finish_reason: str | None = None  # served engines: "stop" or "length"
    answer_cut_off: bool = False  # the output stopped while thinking: no answer (text empty), see utils.text
    notes: list[str] = field(default_factory=list)  # lines for ``info`` (e.g. a thinking switch that did nothing)

    @property
    def new_tokens(self) -> int:
        return self.completion_tokens if self.completion_tokens is not None else len(self.token_ids)


def chat_template_text(processor) -> str:
    """The processor's chat template (or the tokenizer's); several named templates are joined."""
    template = getattr(processor, "chat_template", None) or getattr(processor.tokenizer, "chat_template", None)
    if isinstance(template, dict):
        return "\n".join(str(t) for t in template.values())
    return template or ""


def thinking_kwargs(processor, thinking: str = "auto") -> tuple[dict, str]:
    """``apply_chat_template`` kwargs for the thinking switch, and a note for ``info`` when it changes nothing.

    ``auto`` passes nothing (the template's own default); ``on``/``off`` pass ``enable_thinking`` only to a
    template that reads it (Qwen3.5). Qwen3-VL Instruct/Thinking templates have no switch: nothing is passed.
    """
    if thinking == "auto":
        return {}, ""
    if template_has_thinking_switch(chat_template_text(processor)):
        return {"enable_thinking": thinking == "on"}, ""
    return {}, (f"thinking {thinking}: changed nothing, this model's chat template has no thinking switch (Qwen3-VL "
                "Instruct answers directly, Qwen3-VL Thinking always thinks).")


def render_prompts(processor, conversations: list[list[dict]], thinking: str = "auto") -> list[str]:
    extra, _ = thinking_kwargs(processor, thinking)
    return [processor.apply_chat_template(conv, tokenize=False, add_generation_prompt=True, **extra)
            for conv in conversations]


def prepare_inputs(processor, conversations: list[list[dict]], min_pixels: int | None = None,
                   max_pixels: int | None = None, video_kwargs: dict | None = None, thinking: str = "auto"):
    """Template + processor for a batch of conversations (left padded). Keeps every returned key.

    Returns the processor's ``BatchFeature`` and, per conversation, ``(images, videos)`` counts.
    """
    texts = render_prompts(processor, conversations, thinking)
    images, videos, counts = [], [], []
    for conv in conversations:
        imgs, vids = collect_media(conv)
        images += imgs
        videos += vids
        counts.append((len(imgs), len(vids)))
    kwargs = dict(padding=True, padding_side="left", return_tensors="pt")
    kwargs.update(pixel_budget_kwargs(processor, min_pixels, max_pixels))
    if images:
        kwargs["images"] = images
    if videos:
        kwargs.update(_video_kwargs(processor, videos, video_kwargs))
    return processor(text=texts, **kwargs), counts


def _video_kwargs(processor, videos: list[dict], extra: dict | None) -> dict:
    """Processor kwargs for the video items of a batch.

    Items made by ``utils.video.prepare_video`` carry their metadata (source fps, chosen frame indices) and
    frames already sized within their token budget: they go in with ``do_sample_frames=False`` (so the
    timestamps are the real times in the clip) and a pixel range that holds every clip as it is. ``extra``
    (caller's processor kwargs) wins over these.
    """
    kwargs: dict = {"videos": [v["video"] for v in videos]}
    extra = dict(extra or {})
    if all("video_metadata" in v for v in videos):
        pixels = [int(v["video"].shape[0]) * int(v["video"].shape[-2]) * int(v["video"].shape[-1]) for v in videos]
        own = {"do_sample_frames": False,
               "video_metadata": [{**v["video_metadata"], "frames_indices": list(v["video_metadata"]["frames_indices"])}
                                  for v in videos],
               "size": {"shortest_edge": min(pixels), "longest_edge": max(pixels)}}
        valid = getattr(getattr(processor.video_processor, "valid_kwargs", None), "__annotations__", {})
        if "cap_pixels_per_frame" in valid:  # transformers >= 5.x: our frames are already inside the budget
            own["cap_pixels_per_frame"] = False
        own.update(extra.pop("videos_kwargs", {}))
        kwargs["videos_kwargs"] = {k: v for k, v in own.items() if k not in extra}
    kwargs.update(extra)
    return kwargs


def _seed(seed: int) -> None:
    """``torch.manual_seed`` without its per-call overhead (inside ``fork_rng``, so nothing leaks out)."""
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        torch.mps.manual_seed(seed)


def _cuda_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def generate(model, processor, conversations: list[list[dict]], options: GenerationOptions,
             min_pixels: int | None = None, max_pixels: int | None = None, video_kwargs: dict | None = None,
             on_step: Callable[[int], bool | None] | None = None,
             on_text: Callable[[str, str], object] | None = None, text_interval: float = 0.1,
             ) -> list[GenerationResult]:
    """Answer every conversation. Sampling is seeded locally: global RNG state is left as it was.

    ``on_step(new_tokens)`` runs at every decode step; ``on_text(thinking, answer)`` gets the first
    conversation's answer so far at most every ``text_interval`` seconds (decoded only then), and once
    more with the final answer.
    """
    start = time.perf_counter()
    inputs, counts = prepare_inputs(processor, conversations, min_pixels, max_pixels, video_kwargs, options.thinking)
    prompt_len = inputs["input_ids"].shape[1]
    check_context(model, prompt_len, options.max_new_tokens, processor, conversations, inputs)
    device = getattr(model, "device", torch.device("cpu"))
    inputs = inputs.to(device)

    gen_kwargs, eos_ids, pad_id = _generation_kwargs(model, options)
    logits_processors, stopping = [], []
    if options.presence_penalty:
        logits_processors.append(PresencePenaltyLogitsProcessor(options.presence_penalty, prompt_len))
    if on_step is not None:
        stopping.append(StepCallback(on_step, prompt_len))
    if on_text is not None:
        tail = processor.tokenizer.decode(inputs["input_ids"][0, -8:].tolist(), skip_special_tokens=False)
        stopping.append(LiveText(on_text, processor.tokenizer, prompt_len, text_interval, prompt_opens_think(tail)))
    from transformers import LogitsProcessorList, StoppingCriteriaList

    with torch.random.fork_rng(devices=_cuda_devices()), torch.inference_mode():
        _seed(options.seed)
        out = model.generate(**inputs, **gen_kwargs,
                             logits_processor=LogitsProcessorList(logits_processors),
                             stopping_criteria=StoppingCriteriaList(stopping))
    elapsed = time.perf_counter() - start
    results = _decode(processor, inputs, counts, out[:, prompt_len:].cpu(), eos_ids, pad_id, elapsed)
    note = thinking_kwargs(processor, options.thinking)[1]
    for result in results if note else ():
        result.notes.append(note)
    if on_text is not None and results:
        on_text(results[0].thinking, results[0].text)
    return results


class LiveText:
    """A stopping criterion (never stops) that shows row 0's text so far, decoded only when an update is due."""

    def __init__(self, on_text: Callable[[str, str], object], tokenizer, prompt_length: int, interval: float,
                 opened: bool = False):
        self.on_text, self.tokenizer, self.prompt_length, self.interval = on_text, tokenizer, prompt_length, interval
        self.opened = opened  # the prompt opened <think> (Thinking models): text before </think> is thinking
        self.last = time.monotonic()

    def __call__(self, input_ids: torch.LongTensor, scores=None, **kwargs) -> torch.BoolTensor:
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            raw = self.tokenizer.decode(input_ids[0, self.prompt_length:].tolist(), skip_special_tokens=True)
            self.on_text(*split_thinking(raw, self.opened))
        return torch.zeros((input_ids.shape[0],), dtype=torch.bool, device=input_ids.device)


def check_context(model, prompt_tokens: int, max_new_tokens: int, processor=None,
                  conversations: list[list[dict]] | None = None, inputs=None) -> None:
    """Refuse a request whose prompt + answer cannot fit the model's context window.

    With ``processor``, ``conversations`` and the processor's ``inputs``, a prompt that is too long names the input
    that fills it: ``prompt``, ``system_prompt``, ``chat`` (earlier turns, their images and video included),
    ``image`` or ``video`` (vision tokens of this turn).
    """
    config = getattr(model.config, "text_config", model.config)
    context = getattr(config, "max_position_embeddings", None)
    if not context or prompt_tokens + max_new_tokens <= context:
        return
    if prompt_tokens >= context:
        from .context import context_parts

        parts = context_parts(processor, conversations, inputs) if conversations and processor is not None else {}
        if not parts:
            raise InputError("max_visual_tokens", f"the prompt alone has {prompt_tokens} tokens, more than the "
                             f"model's context of {context}.", "Use fewer or smaller images/frames (lower "
                             "max_visual_tokens, max_frames or max_video_frame_tokens) or a shorter prompt/chat.")
        name = max(parts, key=parts.get)
        shares = ", ".join(f"{k} {v}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]) if v)
        advice = {"prompt": "Shorten the prompt.", "system_prompt": "Shorten the system prompt.",
                  "chat": "Start a new chat (leave chat unconnected) or continue from an earlier turn.",
                  "image": "Use fewer or smaller images: lower max_visual_tokens.",
                  "video": "Lower max_frames, sample_fps or max_video_frame_tokens."}[name]
        raise InputError(name, f"is too large: the prompt has {prompt_tokens} tokens ({shares}), more than the "
                         f"model's context of {context}, and {name} holds the most of them.", advice)
    raise InputError("max_new_tokens", f"{max_new_tokens} new tokens after a {prompt_tokens}-token prompt "
                     f"exceed the model's context of {context} tokens.",
                     f"Set max_new_tokens to at most {context - prompt_tokens}.")


def _generation_kwargs(model, options: GenerationOptions) -> tuple[dict, set[int], int | None]:
    """Sampling settings as ``generate`` kwargs, plus the end-of-sequence ids and the pad id.

    Passed as kwargs, not as a ``GenerationConfig``: transformers 4.57 replaces config values equal to
    the global defaults (e.g. ``do_sample=False``) with the checkpoint's defaults, while kwargs always win.
    """
    config = model.generation_config
    eos = config.eos_token_id
    eos_list = eos if isinstance(eos, list) else [eos] if eos is not None else []
    pad_id = config.pad_token_id if config.pad_token_id is not None else (eos_list[0] if eos_list else None)
    eos_ids = set(eos_list)
    kwargs = options.generate_kwargs()
    if config.pad_token_id is None and pad_id is not None:
        kwargs["pad_token_id"] = pad_id
    return kwargs, eos_ids, pad_id


def _decode(processor, inputs, counts: list[tuple[int, int]], new_ids: torch.Tensor, eos: set[int],
            pad: int | None, elapsed: float) -> list[GenerationResult]:
    tok = processor.tokenizer
    image_counts = _vision_token_counts(processor, inputs.get("image_grid_thw"))
    video_counts = _vision_token_counts(processor, inputs.get("video_grid_thw"))
    results, img_i, vid_i = [], 0, 0
    for row in range(new_ids.shape[0]):
        ids = new_ids[row].tolist()
        for i, t in enumerate(ids):  # cut after the first end-of-sequence token
            if t in eos:
                ids = ids[: i + 1]
                break
        else:
            while ids and ids[-1] == pad:
                ids.pop()
        prompt_ids = inputs["input_ids"][row][inputs["attention_mask"][row].bool()].tolist()
        rendered = tok.decode(prompt_ids, skip_special_tokens=False)
        raw = tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        opened = prompt_opens_think(rendered)
        thinking, text = split_thinking(raw, opened)
        n_img, n_vid = counts[row]
        results.append(GenerationResult(
            text=text, thinking=thinking, raw_text=raw, token_ids=ids, prompt_tokens=len(prompt_ids),
            rendered_prompt=rendered, visual_tokens=image_counts[img_i:img_i + n_img],
            video_tokens=video_counts[vid_i:vid_i + n_vid], seconds=elapsed,
            answer_cut_off=ends_in_thinking(raw, opened)))
        img_i += n_img
        vid_i += n_vid
    return results


def _vision_token_counts(processor, grid_thw) -> list[int]:
    if grid_thw is None:
        return []
    merge = getattr(processor.image_processor, "merge_size", 2)
    return [int(t * h * w) // (merge * merge) for t, h, w in grid_thw.tolist()]
