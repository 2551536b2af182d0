"""Qwen's published sampling presets (SPEC section 5) and the one options check for generation."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import InputError

MAX_SEED = 2**64 - 1  # torch.manual_seed takes 0 .. 2**64 - 1 (ComfyUI's seed widgets stop there too)
# Usable ranges of the Custom sampling values: finite, and far enough from 0 that logits / temperature and
# logits * penalty stay finite in float16 (a denormal temperature such as 1e-310 turns every score into inf).
SAMPLING_RANGES = {"temperature": (1e-3, 100.0), "top_p": (1e-6, 1.0), "repetition_penalty": (1e-2, 100.0),
                   "presence_penalty": (0.0, 100.0)}
RANGE_TEXT = {"temperature": "> 0 (a finite number from 0.001 to 100)", "top_p": "in (0, 1] (a finite number)",
              "repetition_penalty": "> 0 (a finite number from 0.01 to 100)",
              "presence_penalty": ">= 0 (a finite number up to 100)"}
SAMPLING_ADVICE = {
    "temperature": "Use the Greedy preset for deterministic output, or a temperature like 0.7.",
    "top_p": "Use e.g. 0.8 (1.0 = no limit).",
    "repetition_penalty": "Use 1.0 for no penalty.",
    "presence_penalty": "Use 0 for no penalty, or Qwen's 1.5.",
}

PRESET_NAMES = ("VL", "Text", "Thinking", "Greedy", "Custom", "Qwen3.5 Thinking")

# name: (do_sample, temperature, top_p, top_k, repetition_penalty, presence_penalty, max_new_tokens)
PRESETS: dict[str, dict] = {
    "VL": dict(do_sample=True, temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.0,
               presence_penalty=1.5, max_new_tokens=16384),
    "Text": dict(do_sample=True, temperature=1.0, top_p=1.0, top_k=40, repetition_penalty=1.0,
                 presence_penalty=2.0, max_new_tokens=32768),
    "Thinking": dict(do_sample=True, temperature=0.6, top_p=0.95, top_k=20, repetition_penalty=1.0,
                     presence_penalty=0.0, max_new_tokens=40960),
    # Qwen3.5 with thinking on (Qwen's advice); with thinking off Qwen advises the VL values (0.7, 0.8, 20, 1.5).
    "Qwen3.5 Thinking": dict(do_sample=True, temperature=1.0, top_p=0.95, top_k=20, repetition_penalty=1.0,
                             presence_penalty=1.5, max_new_tokens=40960),
    "Greedy": dict(do_sample=False, temperature=None, top_p=None, top_k=None, repetition_penalty=1.0,
                   presence_penalty=0.0, max_new_tokens=None),
}

PRESET_TOOLTIP = (
    "Sampling settings published by Qwen. VL: Instruct models on images/video (temperature 0.7, "
    "top_p 0.8, top_k 20, presence penalty 1.5). Text: Instruct models on text only (1.0, 1.0, 40, "
    "presence 2.0). Thinking: Thinking models (0.6, 0.95, 20, presence 0). Greedy: no sampling, "
    "same input gives the same output. Custom: use the temperature/top_p/top_k/penalty inputs below. "
    "Qwen3.5 Thinking: Qwen3.5 with thinking on (1.0, 0.95, 20, presence 1.5); with thinking off use VL."
)


# For nodes without the numeric sampling inputs: Greedy first (their default), no Custom.
FIXED_PRESET_NAMES = ("Greedy", "VL", "Text", "Thinking", "Qwen3.5 Thinking")
FIXED_PRESET_TOOLTIP = (
    "Sampling settings published by Qwen. Greedy (default): no sampling, the same input gives the same "
    "output. VL: Instruct models on images (temperature 0.7, top_p 0.8, top_k 20, presence penalty 1.5). "
    "Text: (1.0, 1.0, 40, presence 2.0). Thinking: Thinking models (0.6, 0.95, 20). Qwen3.5 Thinking: Qwen3.5 "
    "with thinking on (1.0, 0.95, 20, presence 1.5)."
)


@dataclass(frozen=True)
class GenerationOptions:
    """Everything that shapes one ``generate`` call, already checked."""

    max_new_tokens: int
    do_sample: bool
    temperature: float | None
    top_p: float | None
    top_k: int | None
    repetition_penalty: float
    presence_penalty: float
    seed: int
    preset: str
    thinking: str = "auto"  # "auto" (the model's own default) | "on" | "off": enable_thinking for templates with a switch

    def generate_kwargs(self) -> dict:
        """Keyword arguments for ``GenerationConfig``/``generate`` (presence penalty and seed excluded)."""
        kw = dict(max_new_tokens=self.max_new_tokens, do_sample=self.do_sample,
                  repetition_penalty=self.repetition_penalty)
        if self.do_sample:
            kw.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        return kw


THINKING_MODES = ("auto", "on", "off")
THINKING_TOOLTIP = (
    "Qwen3.5/3.6/3.8 think before answering unless told not to. auto: the model's own default (its chat template "
    "decides; small Qwen3.5 sizes default to off); on: think first (answers take longer; the reasoning goes to "
    "thinking); off: answer directly. Qwen3-VL Instruct/Thinking have no switch: it changes nothing there and "
    "info says so. With thinking on, Qwen advises the Qwen3.5 Thinking preset; off, the VL preset."
)


def check_thinking(thinking) -> str:
    """The ``thinking`` input: one of :data:`THINKING_MODES`."""
    if thinking not in THINKING_MODES:
        raise InputError("thinking", f"must be auto, on or off, got {_short(thinking)}.",
                         "Use auto (the model's own default), on (think before answering) or off (answer directly).")
    return thinking


def resolve_options(preset: str, max_new_tokens: int, seed: int = 0, temperature: float = 0.7,
                    top_p: float = 0.8, top_k: int = 20, repetition_penalty: float = 1.0,
                    presence_penalty: float = 0.0, thinking: str = "auto") -> GenerationOptions:
    """Check the generation inputs and merge them with ``preset``.

    Named presets fix the sampling values (SPEC section 5); ``Custom`` uses the numeric inputs.
    ``max_new_tokens`` always comes from the user. ``top_k`` 0 means no top-k limit. ``thinking`` (auto/on/off)
    becomes ``enable_thinking`` for chat templates that have the switch (Qwen3.5).
    """
    thinking = check_thinking(thinking)
    if preset not in PRESET_NAMES:
        raise InputError("preset", f"unknown preset {preset!r}.", f"Choose one of {', '.join(PRESET_NAMES)}.")
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 1:
        raise InputError("max_new_tokens", f"must be a whole number >= 1, got {max_new_tokens!r}.",
                         "Set how many tokens the answer may have, e.g. 512.")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise InputError("seed", f"must be a whole number from 0 to 2**64 - 1, got {_short(seed)}.", "Use e.g. 0.")
    if preset != "Custom":
        p = PRESETS[preset]
        return GenerationOptions(max_new_tokens=max_new_tokens, do_sample=p["do_sample"],
                                 temperature=p["temperature"], top_p=p["top_p"], top_k=p["top_k"],
                                 repetition_penalty=p["repetition_penalty"],
                                 presence_penalty=p["presence_penalty"], seed=seed, preset=preset, thinking=thinking)
    values = {"temperature": temperature, "top_p": top_p, "repetition_penalty": repetition_penalty,
              "presence_penalty": presence_penalty}
    for name, value in values.items():
        check_sampling_value(name, value)
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0:
        raise InputError("top_k", f"must be a whole number >= 0, got {_short(top_k)}.", "Use e.g. 20 (0 = no limit).")
    return GenerationOptions(max_new_tokens=max_new_tokens, do_sample=True, temperature=float(temperature),
                             top_p=float(top_p), top_k=int(top_k),
                             repetition_penalty=float(repetition_penalty),
                             presence_penalty=float(presence_penalty), seed=seed, preset=preset, thinking=thinking)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_sampling_value(name: str, value) -> float:
    """A Custom sampling value (from a widget, a wired FLOAT node, the API or the CLI) inside its usable range.

    NaN, inf, denormals and other values that would turn the model's scores into NaN/inf are refused.
    """
    lo, hi = SAMPLING_RANGES[name]
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (number and math.isfinite(value) and lo <= value <= hi):
        raise InputError(name, f"must be {RANGE_TEXT[name]}, got {_short(value)}.", SAMPLING_ADVICE[name])
    return float(value)
