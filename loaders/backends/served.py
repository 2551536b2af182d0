"""The served engine: Qwen3-VL behind an OpenAI-compatible chat-completions server.

Requests run up to ``max_concurrency`` at a time, each streamed; answers come back in input order. Hooks run
in the caller's thread (ComfyUI's progress bar and Cancel), never in the request threads: a Cancel closes every
open stream, which makes the server abort those requests.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ...utils.errors import InputError
from ...utils.openai_messages import to_openai
from ...utils.presets import GenerationOptions
from ...utils.text import ends_in_thinking, split_thinking
from ...utils.video import TOKEN_SIDE
from ..engine import GenerationResult
from .base import NO_HOOKS, Hooks, VisualBudget
from .openai_client import Cancel, OpenAIClient, ServerError, StreamResult, normalize_base_url
from .server_keys import check_key_env
from .server_kinds import ServerKind, detect

logger = logging.getLogger(__name__)
MAX_CONCURRENCY = 256
_CLIENTS: dict[tuple, OpenAIClient] = {}
_CLIENTS_LOCK = threading.Lock()
_DONE: OrderedDict[str, GenerationResult] = OrderedDict()  # finished answers by request, for re-runs
_DONE_MAX = 4096
_DONE_LOCK = threading.Lock()


@dataclass(frozen=True)
class ServerBundle:
    """What Qwen3-VL Server Model hands to other nodes (ComfyUI type ``QWEN3VL_MODEL``, like a local model)."""

    base_url: str
    model: str
    api_key_env: str = ""
    timeout_s: float = 120.0
    max_concurrency: int = 4
    keep_alive: bool = True
    opens_think: bool | None = field(default=None, compare=False)
    url: str = field(default="", repr=False)  # base_url as typed (a user:password in it); base_url shows ***
    kind: ServerKind = field(default_factory=ServerKind, compare=False)  # which server: its differences

    @property
    def path(self) -> str:  # what info shows as the model
        return self.model

    def client(self) -> OpenAIClient:
        """The HTTP client: one shared pool per server and settings with keep_alive, else a new one (closed
        after the run)."""
        if not self.keep_alive:
            return self._new_client()
        return pooled_client((self.url or self.base_url, self.api_key_env, self.timeout_s, self.max_concurrency),
                             self._new_client)

    def after_run(self) -> None:
        """After a run: nothing to stop for a server the user runs (a managed llama-server may stop)."""

    def _new_client(self) -> OpenAIClient:
        return OpenAIClient(self.url or self.base_url, self.api_key_env, self.timeout_s,
                            max_connections=self.max_concurrency)


def pooled_client(key: tuple, make: Callable[[], OpenAIClient],
                  stale: Callable[[tuple], bool] = lambda key: False) -> OpenAIClient:
    """The shared client for ``key`` (made by ``make`` the first time); making one closes and forgets the clients
    whose keys ``stale`` names (a restarted server's)."""
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            for old in [k for k in _CLIENTS if stale(k)]:
                _CLIENTS.pop(old).close()
            client = _CLIENTS[key] = make()
        return client


def check_settings(timeout_s: float, max_concurrency: int) -> None:
    if not isinstance(max_concurrency, int) or isinstance(max_concurrency, bool) or \
            not 1 <= max_concurrency <= MAX_CONCURRENCY:
        raise InputError("max_concurrency", f"must be a whole number from 1 to {MAX_CONCURRENCY}, got "
                         f"{max_concurrency!r}.", "Use 4-16 for vLLM/SGLang, 1 for llama-server/Ollama/LM Studio "
                         "unless they run parallel slots.")
    if not isinstance(timeout_s, (int, float)) or isinstance(timeout_s, bool) or not 0 < timeout_s <= 86400:
        raise InputError("timeout_s", f"must be a number of seconds > 0, got {timeout_s!r}.",
                         "Use e.g. 120 (the longest wait for the server's next token).")


def connect(base_url: str, model: str = "", api_key_env: str = "", timeout_s: float = 120.0,
            max_concurrency: int = 4, keep_alive: bool = True) -> ServerBundle:
    """Check the server (``GET /models``) and the model it serves; return the bundle the nodes use."""
    check_settings(timeout_s, max_concurrency)
    api_key_env = check_key_env(api_key_env)  # refused before any request
    client = OpenAIClient(base_url, api_key_env, min(float(timeout_s), 30.0), max_connections=2)
    try:
        served = client.list_models()
        name = model.strip() if isinstance(model, str) else ""
        if not served:
            raise ServerError("base_url", f"the server at {client.base_url} lists no model.",
                              "Start it with a Qwen3-VL model (e.g. vllm serve Qwen/Qwen3-VL-8B-Instruct).")
        if not name:
            name = served[0]
        elif name not in served:
            names = ", ".join(served[:20])
            raise ServerError("model", f"{name[:200]!r} is not served at {client.base_url}; it serves: "
                              f"{names[:1000]}.", "Leave model empty for the first one, or copy a name from that "
                              "list.")
        kind = detect(client)
        if kind.vision is False:
            raise ServerError("base_url", f"the llama-server at {client.base_url} has no vision: it was started "
                              "without --mmproj.", "Restart it with --mmproj mmproj-<model>.gguf (the projector "
                              "file beside the GGUF), or use Qwen3-VL GGUF (llama.cpp), which starts it for you.")
        opens = kind.opens_think(client, name)
    finally:
        client.close()
    bundle = ServerBundle(client.base_url, name, api_key_env, float(timeout_s), int(max_concurrency),
                          bool(keep_alive), opens, normalize_base_url(base_url), kind)
    logger.info("served model %s at %s (%s, max_concurrency %d, thinking prompt %s)", name, bundle.base_url,
                kind.name, max_concurrency, opens)
    return bundle


def request_payload(bundle: ServerBundle, conversation: list[dict], options: GenerationOptions,
                    budget: VisualBudget) -> tuple[dict, Any]:
    """The chat-completions body for one conversation (Qwen's presets mapped to the OpenAI fields)."""
    min_pixels, max_pixels = bundle.kind.pixel_bounds(budget)
    req = to_openai(conversation, min_pixels, max_pixels)
    payload: dict[str, Any] = {"model": bundle.model, "messages": req.messages, "max_tokens": options.max_new_tokens,
                               "seed": options.seed % (2 ** 63), "presence_penalty": options.presence_penalty}
    if options.do_sample:
        payload.update(temperature=options.temperature, top_p=options.top_p)
        if options.top_k:
            payload["top_k"] = options.top_k
    else:
        payload.update(temperature=0.0, top_p=1.0)
    if options.repetition_penalty != 1.0:
        payload["repetition_penalty"] = options.repetition_penalty
    if req.media_io_kwargs is not None:
        payload["media_io_kwargs"] = {"video": req.media_io_kwargs}
    if options.thinking != "auto":  # Qwen3.5's switch (vLLM, SGLang, llama-server pass it to the chat template)
        payload["chat_template_kwargs"] = {"enable_thinking": options.thinking == "on"}
    bundle.kind.adapt(payload, sum(req.visual_tokens) + sum(req.video_tokens), bool(req.video_tokens))
    return payload, req


THINKING_SENT_NOTE = ("thinking {mode}: sent to the server as chat_template_kwargs.enable_thinking = {value} "
                      "(a chat template without that switch, e.g. Qwen3-VL's, ignores it).")


def _opened(bundle: ServerBundle, thinking: str) -> bool | None:
    """Whether the server's prompt opened ``<think>`` (None: not known; then only a leading ``<think>`` or a
    ``</think>`` counts).

    auto: the probe at connect time. on/off: the switch, where the template has one; the server does not say
    whether it has: a Qwen3-VL Instruct template ignores ``on`` (never opens), a Qwen3-VL Thinking one ignores
    ``off`` (always opens). So where the probe saw the template's default go the other way, it is not known; where
    the probe could not tell, the user's switch is taken at its word."""
    if thinking == "auto":
        return bundle.opens_think
    if thinking == "on":
        return None if bundle.opens_think is False else True
    return None if bundle.opens_think else False


def _result(bundle: ServerBundle, stream: StreamResult, req, seconds: float, mode: str = "auto") -> GenerationResult:
    opened = _opened(bundle, mode)
    if stream.has_reasoning_field:  # the server split it (vLLM --reasoning-parser)
        thinking, text = stream.reasoning.strip(), stream.content.strip()
        raw = f"<think>{stream.reasoning}</think>{stream.content}"
        cut_off = not text and stream.finish_reason == "length"
    else:
        raw = stream.content
        thinking, text = split_thinking(raw, opened)
        cut_off = ends_in_thinking(raw, opened)
    completion = stream.completion_tokens if stream.completion_tokens is not None else stream.chunks
    return GenerationResult(text=text, thinking=thinking, raw_text=raw, token_ids=[],
                            prompt_tokens=int(stream.prompt_tokens or 0),
                            rendered_prompt=f"(rendered by the server at {bundle.base_url})",
                            visual_tokens=list(req.visual_tokens), video_tokens=list(req.video_tokens),
                            seconds=seconds, completion_tokens=int(completion),
                            finish_reason=stream.finish_reason, answer_cut_off=cut_off,
                            notes=[] if mode == "auto" else
                            [THINKING_SENT_NOTE.format(mode=mode, value=str(mode == "on").lower())])


def _digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class ServedBackend:
    """Qwen3-VL on a server; the same calls as the in-process backend."""

    def __init__(self, bundle: ServerBundle):
        self.bundle = bundle
        self.label = bundle.model

    def video_factor(self) -> int:
        return TOKEN_SIDE

    def release(self) -> None:
        """The server owns the model; a managed llama-server with keep_loaded off is stopped."""
        self.bundle.after_run()

    def generate(self, conversations: list[list[dict]], options: GenerationOptions, budget: VisualBudget,
                 hooks: Hooks = NO_HOOKS, video_kwargs: dict | None = None) -> list[GenerationResult]:
        if video_kwargs:
            raise InputError("video", "custom processor options cannot be sent to a served model.",
                             "Use the video inputs of Qwen3-VL Generate.")
        out: list[GenerationResult] = []
        for group in self.generate_stream(enumerate(conversations), options, budget, self.bundle.max_concurrency,
                                          hooks):
            out.extend(r for _, r in group)
        return out

    def generate_stream(self, items: Iterable[tuple[Any, list[dict]]], options: GenerationOptions,
                        budget: VisualBudget, batch_size: int = 0, hooks: Hooks = NO_HOOKS,
                        before_batch: Callable[[], None] | None = None,
                        ordered: bool = True) -> Iterator[list[tuple[Any, GenerationResult]]]:
        """Up to ``max_concurrency`` requests in flight (``batch_size`` is the in-process engine's; unused).
        ``ordered=False``: each answer as soon as it arrives, and the finished ones before an error is raised."""
        client = self.bundle.client()
        try:
            run = _Run(self.bundle, options, budget, hooks, before_batch)
            yield from run.results(iter(items), client, ordered)
        finally:
            if not self.bundle.keep_alive:
                client.close()


class _Run:
    """One stream of requests: the pool, the event queue, and the in-order hand-back."""

    def __init__(self, bundle: ServerBundle, options: GenerationOptions, budget: VisualBudget, hooks: Hooks,
                 before: Callable[[], None] | None):
        self.bundle, self.options, self.budget, self.hooks, self.before = bundle, options, budget, hooks, before
        self.events: queue.Queue = queue.Queue()
        self.cancel = Cancel()
        self.tokens: dict[int, int] = {}
        self.content: dict[int, str] = {}
        self.reasoning: dict[int, str] = {}
        self.last_text = 0.0

    def _worker(self, client: OpenAIClient, seq: int, conversation: list[dict]) -> None:
        """In a request thread: encode the images (PIL releases the GIL: encodes run side by side), send, read."""
        start = time.perf_counter()
        try:
            payload, req = request_payload(self.bundle, conversation, self.options, self.budget)
            digest = _digest(payload)
            cached = _recall(digest)
            if cached is not None:
                self.events.put((seq, "done", cached))
                return
            stream = client.stream_chat(payload, lambda kind, piece: self.events.put((seq, kind, piece)), self.cancel)
            if self.cancel.is_set() and stream.finish_reason is None:
                self.events.put((seq, "cancelled", None))  # a part of an answer is never handed out
                return
            result = _result(self.bundle, stream, req, time.perf_counter() - start, self.options.thinking)
            _remember(digest, result)
            self.events.put((seq, "done", result))
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread, which raises it
            self.events.put((seq, "error", self.bundle.kind.explain(err) if isinstance(err, ServerError) else err))

    def results(self, items: Iterator[tuple[Any, list[dict]]], client: OpenAIClient, ordered: bool = True):
        width = self.bundle.max_concurrency
        keys: dict[int, Any] = {}
        done: dict[int, GenerationResult] = {}
        pending: set[int] = set()
        next_seq, next_out, exhausted = 0, 0, False
        pool = ThreadPoolExecutor(max_workers=width, thread_name_prefix="qwen3vl-served")
        try:
            while True:
                while not exhausted and len(pending) < width:
                    item = next(items, None)
                    if item is None:
                        exhausted = True
                        break
                    if self.before is not None:
                        self.before()
                    keys[next_seq], conversation = item
                    pending.add(next_seq)
                    pool.submit(self._worker, client, next_seq, conversation)
                    next_seq += 1
                if ordered:
                    ready = []
                    while next_out in done:
                        ready.append((keys.pop(next_out), done.pop(next_out)))
                        next_out += 1
                else:
                    ready = [(keys.pop(seq), done.pop(seq)) for seq in sorted(done)]
                if ready:
                    yield ready
                elif exhausted and not pending:
                    return
                else:
                    # the request whose tokens and text the hooks follow: the next one to hand out, or (any
                    # order) the oldest still running
                    error = self._wait(pending, done, next_out if ordered else min(pending, default=next_out))
                    if error is not None:
                        self.cancel.set()
                        if not ordered:  # answers already finished are handed out before the error
                            pool.shutdown(wait=True)  # streams closed: each request ends now (or within timeout_s)
                            self._drain(pending, done)
                            finished = [(keys.pop(seq), done.pop(seq)) for seq in sorted(done)]
                            if finished:
                                yield finished
                        raise error
        except BaseException:
            self.cancel.set()  # closes every open stream: the server aborts those requests
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _drain(self, pending: set[int], done: dict[int, GenerationResult]) -> None:
        """Collect the answers that finished meanwhile (their events are already queued)."""
        while True:
            try:
                seq, kind, value = self.events.get_nowait()
            except queue.Empty:
                return
            if kind == "done":
                pending.discard(seq)
                done[seq] = value

    def _wait(self, pending: set[int], done: dict[int, GenerationResult], first: int) -> BaseException | None:
        """Handle the next event (or 0.1 s of silence); hooks run here, in the caller's thread. A request's
        error is returned."""
        try:
            seq, kind, value = self.events.get(timeout=0.1)
        except queue.Empty:
            if self.hooks.on_step is not None:
                self.hooks.on_step(self.tokens.get(first, 0))  # lets Cancel through while the server is silent
            return None
        if kind == "error":
            return value
        if kind == "cancelled":
            pending.discard(seq)
            return None
        if kind == "done":
            pending.discard(seq)
            done[seq] = value
            if seq == first and self.hooks.on_text is not None:
                self.hooks.on_text(value.thinking, value.text)
            return None
        self.tokens[seq] = self.tokens.get(seq, 0) + 1
        store = self.reasoning if kind == "reasoning" else self.content
        store[seq] = store.get(seq, "") + value
        if seq == first:
            if self.hooks.on_step is not None:
                self.hooks.on_step(self.tokens[seq])
            self._show_text(seq)
        return None

    def _show_text(self, seq: int) -> None:
        now = time.monotonic()
        if self.hooks.on_text is None or now - self.last_text < self.hooks.text_interval:
            return
        self.last_text = now
        content = self.content.get(seq, "")
        if self.reasoning.get(seq):
            self.hooks.on_text(self.reasoning[seq], content)
        else:
            self.hooks.on_text(*split_thinking(content, _opened(self.bundle, self.options.thinking)))


def _remember(digest: str, result: GenerationResult) -> None:
    """Keep finished answers, so a re-run after a failure (server restart) asks only for what is missing."""
    with _DONE_LOCK:
        _DONE[digest] = result
        while len(_DONE) > _DONE_MAX:
            _DONE.popitem(last=False)


def _recall(digest: str) -> GenerationResult | None:
    with _DONE_LOCK:
        result = _DONE.get(digest)
    if result is not None:
        logger.debug("served answer reused for request %s", digest[:12])
    return result


def forget_answers() -> None:
    """Drop the remembered answers (tests; Unload Models)."""
    with _DONE_LOCK:
        _DONE.clear()
