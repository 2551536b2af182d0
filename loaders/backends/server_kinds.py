"""What differs between OpenAI-compatible servers, in one place: vLLM / SGLang (the reference) and llama.cpp's
``llama-server``. The served backend asks :func:`detect` once per connection and then lets the returned
:class:`ServerKind` adapt each request; nodes never see which server answers.

llama-server differs in six ways (seen with the llama.cpp vendored in llama-cpp-python 0.3.36):

1. ``/tokenize`` reads only ``content`` (a chat gives ``[]``) and ``/detokenize`` answers ``content``: the
   thinking prompt is read from ``/apply-template`` (the rendered prompt) instead;
2. ``max_tokens`` beyond a slot's context is not refused (the answer stops early with ``length``): the slot
   context from ``/props`` is checked before sending;
3. ``--parallel N`` divides ``-c`` among the slots: errors say how many tokens one slot holds;
4. images get at least 8 and at most 4096 visual tokens (``clip.cpp``, Qwen-VL): the pack resizes within those
   bounds, so ``info`` counts what the server sees;
5. the repetition penalty is ``repeat_penalty`` (vLLM's ``repetition_penalty`` is ignored);
6. no video (a frame list is refused as a bad base64 URL): refused here, naming ``video``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ...utils.errors import InputError
from ...utils.text import prompt_opens_think
from .base import VisualBudget, pixel_bounds
from .openai_client import OpenAIClient, ServerError

logger = logging.getLogger(__name__)
VLLM, LLAMA_CPP, OTHER = "vllm", "llama.cpp", "openai"
LLAMA_IMAGE_TOKENS = (8, 4096)  # clip.cpp: set_limit_image_tokens(8, 4096) for Qwen2/2.5/3-VL projectors
TOKEN_PIXELS = 32 * 32


@dataclass(frozen=True)
class ServerKind:
    """Which server answers and what it told about itself."""

    name: str = OTHER
    version: str = ""
    slot_context: int | None = None  # tokens one request can use (llama-server: -c / --parallel)
    slots: int | None = None
    vision: bool | None = None
    image_tokens: tuple[int, int] | None = None  # the server's own bounds per image
    log_file: str = ""  # a managed server's log, named in its errors
    context_input: str = ""  # the input that sets the slot context (the GGUF node's "context")

    @property
    def is_llama(self) -> bool:
        return self.name == LLAMA_CPP

    # --- thinking prompt (difference 1) ------------------------------------------------------------------------
    def opens_think(self, client: OpenAIClient, model: str) -> bool | None:
        """Whether the chat template's generation prompt opens ``<think>`` (Thinking models); None = unknown."""
        messages = [{"role": "user", "content": "hi"}]
        if self.is_llama:
            body = _ask(client, "POST", "/apply-template", json={"messages": messages})
            prompt = body.get("prompt") if isinstance(body, dict) else None
            return prompt_opens_think(prompt) if isinstance(prompt, str) else None
        tokens = client.tokenize(model, messages)
        if not tokens:
            return None
        tail = client.detokenize(model, tokens[-8:])
        return None if tail is None else prompt_opens_think(tail)

    # --- per request (differences 2-6) -------------------------------------------------------------------------
    def pixel_bounds(self, budget: VisualBudget) -> tuple[int | None, int | None]:
        """The budget's pixel bounds per image, inside the server's own (so the server keeps the size sent)."""
        low, high = pixel_bounds(budget)
        if self.image_tokens is None:
            return low, high
        floor, ceiling = (t * TOKEN_PIXELS for t in self.image_tokens)
        low = max(low or floor, floor)
        high = min(high or ceiling, ceiling)
        return min(low, high), high

    def adapt(self, payload: dict[str, Any], visual_tokens: int, has_video: bool) -> None:
        """Rename and check the request body for this server (in place); raise what it would get wrong."""
        if not self.is_llama:
            return
        if has_video:
            raise InputError("video", "llama-server takes no video from this pack: it refuses a frame list as a "
                             "bad base64 URL, and it would keep no frame timestamps.", "Send the frames as images (Generate's image input "
                             "takes a batch; at most a few), or describe videos with a local model or vLLM.")
        if "repetition_penalty" in payload:
            payload["repeat_penalty"] = payload.pop("repetition_penalty")
        if self.slot_context:
            self.check_fits(int(payload.get("max_tokens") or 0), visual_tokens)

    def check_fits(self, max_new_tokens: int, visual_tokens: int) -> None:
        ctx = self.slot_context or 0
        if visual_tokens and visual_tokens + 16 >= ctx:
            raise InputError("max_visual_tokens", f"the images need {visual_tokens} visual tokens but one "
                             f"llama-server slot holds {ctx} tokens{self._slot_note()}.",
                             f"Lower max_visual_tokens, send fewer images, or {self._raise_context()}.")
        if max_new_tokens + visual_tokens >= ctx:
            raise InputError("max_new_tokens", f"{max_new_tokens} new tokens (plus {visual_tokens} visual tokens "
                             f"and the prompt) cannot fit the {ctx} tokens of one llama-server slot"
                             f"{self._slot_note()}; it would stop early without an error.",
                             f"Lower max_new_tokens below {max(ctx - visual_tokens - 256, 1)}, or "
                             f"{self._raise_context()}.")

    def explain(self, err: ServerError) -> ServerError:
        """A server error, re-told for this server (slot context; the managed server's log)."""
        if not self.is_llama:
            return err
        text = str(err)
        name, problem, advice = err.input_name, err.problem, err.advice
        if "exceeds the available context" in text or "exceed_context_size" in text:
            name = self.context_input or "max_visual_tokens"
            advice = (f"One slot holds {self.slot_context or '?'} tokens{self._slot_note()}: lower "
                      f"max_visual_tokens or max_new_tokens, or {self._raise_context()}.")
        if self.log_file:
            advice = f"{advice} llama-server's log: {self.log_file}".strip()
        if (name, problem, advice) == (err.input_name, err.problem, err.advice):
            return err
        out = ServerError(name, problem, advice)
        out.__cause__ = err
        return out

    def _slot_note(self) -> str:
        if self.slots and self.slots > 1:
            return f" (llama-server divides -c among its {self.slots} --parallel slots)"
        return ""

    def _raise_context(self) -> str:
        if self.context_input.startswith("--"):  # the CLI
            return f"raise {self.context_input} (tokens per slot)"
        if self.context_input:
            return f"raise {self.context_input} (tokens per slot) on Qwen3-VL GGUF (llama.cpp)"
        return "restart llama-server with a larger -c (it is divided by --parallel)"


def detect(client: OpenAIClient) -> ServerKind:
    """Ask the server what it is: llama-server answers ``/props``, vLLM and SGLang answer ``/version``; anything
    else is a plain OpenAI-compatible server. Every value read is checked; an odd answer only means "other"."""
    props = _ask(client, "GET", "/props")
    if isinstance(props, dict) and ("default_generation_settings" in props or "total_slots" in props):
        return _llama_kind(props)
    version = _ask(client, "GET", "/version")
    if isinstance(version, dict) and isinstance(version.get("version"), str):
        return ServerKind(VLLM, version["version"][:100])
    return ServerKind(OTHER)


def _count(value: Any, high: int) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= high else None


def _llama_kind(props: dict) -> ServerKind:
    settings = props.get("default_generation_settings")
    modalities = props.get("modalities")
    vision = modalities.get("vision") if isinstance(modalities, dict) else None
    build = props.get("build_info")
    return ServerKind(LLAMA_CPP, build[:100] if isinstance(build, str) else "",
                      slot_context=_count(settings.get("n_ctx") if isinstance(settings, dict) else None, 1 << 24),
                      slots=_count(props.get("total_slots"), 4096),
                      vision=vision if isinstance(vision, bool) else None, image_tokens=LLAMA_IMAGE_TOKENS)


def _ask(client: OpenAIClient, method: str, path: str, **kwargs) -> Any:
    """A small JSON answer from the server's root (beside /v1), bounded like every other read; None when the
    server has no such endpoint or answers with an error."""
    try:
        return client.root_json(method, path, **kwargs)
    except ServerError as err:
        logger.debug("%s %s: %s", method, path, err)
        return None
