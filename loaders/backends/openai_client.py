"""HTTP transport to an OpenAI-compatible chat-completions server (vLLM, SGLang, llama-server, Ollama, LM Studio).

Everything about the wire stays here: streaming (server-sent events), timeouts, bounded retries with backoff,
and turning every failure into an error that names the node input to fix. The API key is read from the
environment variable named by ``api_key_env`` at call time; it is never stored in a workflow nor logged.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from ...utils.errors import InputError

logger = logging.getLogger(__name__)
RETRY_STATUS = (429, 502, 503, 504)
RETRY_BASE_DELAY = 0.5  # seconds before the first retry; doubled each time, at most 8 s


class ServerError(InputError):
    """A served engine could not answer; ``str()`` names the input to fix (base_url, timeout_s, ...)."""


@dataclass
class StreamResult:
    """One streamed answer."""

    content: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    chunks: int = 0
    retries: int = 0
    has_reasoning_field: bool = False


@dataclass
class Cancel:
    """Shared by the requests of one run: set it and every open stream is closed (the server aborts them)."""

    event: threading.Event = field(default_factory=threading.Event)
    _open: set = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, response) -> None:
        with self._lock:
            self._open.add(response)
        if self.event.is_set():
            response.close()

    def unregister(self, response) -> None:
        with self._lock:
            self._open.discard(response)

    def set(self) -> None:
        self.event.set()
        with self._lock:
            responses = list(self._open)
        for response in responses:
            response.close()

    def is_set(self) -> bool:
        return self.event.is_set()


def normalize_base_url(base_url: str) -> str:
    """Check ``base_url`` (scheme, host) and return it without a trailing slash."""
    url = (base_url or "").strip().rstrip("/")
    if not url:
        raise ServerError("base_url", "is empty.", "Give the server's OpenAI API address, e.g. http://127.0.0.1:8000/v1.")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as err:
        raise ServerError("base_url", f"{url!r} is not a URL ({err}).", "Use e.g. http://127.0.0.1:8000/v1.") from err
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ServerError("base_url", f"{url!r} has no http:// or https:// scheme and host.",
                          "Write the whole address, e.g. http://127.0.0.1:8000/v1 (vLLM), http://127.0.0.1:11434/v1 "
                          "(Ollama), http://127.0.0.1:1234/v1 (LM Studio), http://127.0.0.1:8080/v1 (llama-server).")
    return url


def _server_message(response: httpx.Response) -> str:
    """The error text a server put in its JSON body (OpenAI ``{"error": {"message"}}``, vLLM, FastAPI), short."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text[:300].strip()
    if isinstance(body, dict):
        err = body.get("error", body.get("detail", body.get("message", body)))
        if isinstance(err, dict):
            err = err.get("message", err)
        return str(err)[:500]
    return str(body)[:300]


class OpenAIClient:
    """A small client: ``GET /models``, ``POST /chat/completions`` (streamed) and vLLM's ``/tokenize``."""

    def __init__(self, base_url: str, api_key_env: str = "", timeout_s: float = 120.0, retries: int = 3,
                 max_connections: int = 16):
        self.base_url = normalize_base_url(base_url)
        self.api_key_env = (api_key_env or "").strip()
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        timeout = httpx.Timeout(self.timeout_s, connect=min(10.0, self.timeout_s))
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._http = httpx.Client(timeout=timeout, limits=limits, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    # --- pieces -------------------------------------------------------------------------------------------------
    def _headers(self) -> dict:
        headers = {"Accept": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env, "")
            if key:
                headers["Authorization"] = f"Bearer {key}"
        return headers

    def _auth_error(self, status: int, message: str) -> ServerError:
        if not self.api_key_env:
            why = "no api_key_env is set"
        elif not os.environ.get(self.api_key_env):
            why = f"the environment variable {self.api_key_env} is not set (or empty) in ComfyUI's environment"
        else:
            why = f"the key in {self.api_key_env} was refused"
        return ServerError("api_key_env", f"the server at {self.base_url} wants an API key ({status}: {message}); "
                           f"{why}.", "Put the key in an environment variable before starting ComfyUI (e.g. export "
                           "QWEN3VL_API_KEY=...) and give that variable's NAME here.")

    def _connect_error(self, err: Exception) -> ServerError:
        return ServerError("base_url", f"cannot reach the server at {self.base_url} ({type(err).__name__}: {err}).",
                           "Start the server (see the README: vLLM, llama-server, Ollama, LM Studio) or fix base_url; "
                           "then run again.")

    def _timeout_error(self, err: Exception) -> ServerError:
        return ServerError("timeout_s", f"the server at {self.base_url} sent nothing for {self.timeout_s:g} s "
                           f"({type(err).__name__}).", "Raise timeout_s if the server is busy or slow to start, or "
                           "check that it is running.")

    def _send(self, method: str, path: str, **kwargs) -> httpx.Response:
        """One non-streamed request with bounded retries (connection refused/reset, 429/502/503/504)."""
        response = self._with_retries(lambda: self._http.request(method, self.base_url + path, headers=self._headers(),
                                                                 **kwargs))
        return response

    def _with_retries(self, call: Callable[[], httpx.Response], result: StreamResult | None = None,
                      cancel: Cancel | None = None):
        delay = RETRY_BASE_DELAY
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = call()
            except httpx.TimeoutException as err:
                raise self._timeout_error(err) from err
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as err:
                if last:
                    raise self._connect_error(err) from err
                logger.info("%s: %s, retrying in %.1f s", self.base_url, type(err).__name__, delay)
            else:
                if response.status_code not in RETRY_STATUS or last:
                    return response
                wait = response.headers.get("Retry-After", "")
                delay = min(float(wait), 10.0) if wait.replace(".", "", 1).isdigit() else delay
                logger.info("%s: HTTP %d, retrying in %.1f s", self.base_url, response.status_code, delay)
                response.close()
            if result is not None:
                result.retries += 1
            if cancel is not None and cancel.event.wait(delay):
                raise ServerError("base_url", "the request was cancelled while waiting to retry.", "")
            if cancel is None:
                time.sleep(delay)
            delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")

    def _check_status(self, response: httpx.Response, what: str) -> None:
        if response.status_code < 400:
            return
        response.read()
        message = _server_message(response)
        status = response.status_code
        if status in (401, 403):
            raise self._auth_error(status, message)
        if status in RETRY_STATUS:
            raise ServerError("base_url", f"the server at {self.base_url} is busy or unavailable ({status}: {message}) "
                              f"after {self.retries} retries.", "Wait and run again, lower max_concurrency, or add "
                              "replicas behind a load balancer.")
        if status == 404 and what == "models":
            raise ServerError("base_url", f"{self.base_url}/models does not exist (404): not an OpenAI-compatible API "
                              "address.", "base_url usually ends in /v1, e.g. http://127.0.0.1:8000/v1.")
        raise classify_request_error(status, message, self.base_url)

    # --- API ----------------------------------------------------------------------------------------------------
    def list_models(self) -> list[str]:
        response = self._send("GET", "/models")
        self._check_status(response, "models")
        try:
            body = response.json()
            models = [str(m["id"]) for m in body["data"]]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
            raise ServerError("base_url", f"{self.base_url}/models did not answer with an OpenAI model list "
                              f"({type(err).__name__}; it starts {response.text[:80]!r}).",
                              "Point base_url at the server's OpenAI API, e.g. http://127.0.0.1:8000/v1.") from err
        return models

    def tokenize(self, model: str, messages: list[dict], **extra) -> list[int] | None:
        """vLLM / SGLang ``/tokenize`` of a chat (at the server root, beside /v1); None when the server has none."""
        root = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        try:
            response = self._http.post(root + "/tokenize", headers=self._headers(),
                                       json={"model": model, "messages": messages, "add_generation_prompt": True,
                                             **extra})
        except httpx.HTTPError as err:
            logger.debug("no /tokenize at %s: %s", root, err)
            return None
        if response.status_code >= 400:
            logger.debug("/tokenize at %s: %d %s", root, response.status_code, _server_message(response))
            if response.status_code == 400:
                raise classify_request_error(400, _server_message(response), self.base_url)
            return None
        return list(response.json().get("tokens", []))

    def detokenize(self, model: str, tokens: list[int]) -> str | None:
        root = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        try:
            response = self._http.post(root + "/detokenize", headers=self._headers(),
                                       json={"model": model, "tokens": tokens})
        except httpx.HTTPError:
            return None
        return response.json().get("prompt") if response.status_code < 400 else None

    def stream_chat(self, payload: dict, on_delta: Callable[[str, str], None], cancel: Cancel) -> StreamResult:
        """POST a streamed chat completion; ``on_delta(kind, text)`` per piece (kind "content" or "reasoning")."""
        payload = {**payload, "stream": True, "stream_options": {"include_usage": True}}
        result = StreamResult()
        url = self.base_url + "/chat/completions"

        def start():
            request = self._http.build_request("POST", url, headers=self._headers(), json=payload)
            return self._http.send(request, stream=True)

        response = self._with_retries(start, result, cancel)
        cancel.register(response)
        try:
            self._check_status(response, "chat")
            self._read_events(response, result, on_delta, cancel)
        except httpx.TimeoutException as err:
            raise self._timeout_error(err) from err
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.StreamClosed) as err:
            if cancel.is_set():
                return result
            raise self._cut_off(result, err) from err
        finally:
            cancel.unregister(response)
            response.close()
        if result.finish_reason is None and not cancel.is_set():
            raise self._cut_off(result, None)
        return result

    def _cut_off(self, result: StreamResult, err: Exception | None) -> ServerError:
        why = f" ({type(err).__name__})" if err is not None else ""
        return ServerError("base_url", f"the server at {self.base_url} closed the answer stream after "
                           f"{result.chunks} token(s) without finishing{why}: it may have stopped or crashed.",
                           "Check the server (its log), restart it, then run again; finished answers are kept.")

    def _read_events(self, response: httpx.Response, result: StreamResult,
                     on_delta: Callable[[str, str], None], cancel: Cancel) -> None:
        for line in response.iter_lines():
            if cancel.is_set():
                return
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return
            try:
                event = json.loads(data)
            except json.JSONDecodeError as err:
                raise ServerError("base_url", f"the server at {self.base_url} sent a stream event that is not JSON "
                                  f"({data[:80]!r}).", "Is base_url an OpenAI-compatible server? Check its version "
                                  "and log.") from err
            if not isinstance(event, dict):
                continue
            if "error" in event:
                err = event["error"]
                message = err.get("message", err) if isinstance(err, dict) else err
                raise classify_request_error(int(err.get("code", 500)) if isinstance(err, dict) and
                                             str(err.get("code", "")).isdigit() else 500, str(message), self.base_url)
            usage = event.get("usage")
            if isinstance(usage, dict):
                result.prompt_tokens = usage.get("prompt_tokens", result.prompt_tokens)
                result.completion_tokens = usage.get("completion_tokens", result.completion_tokens)
            for choice in event.get("choices") or []:
                delta = choice.get("delta") or {}
                for key, kind in (("reasoning_content", "reasoning"), ("reasoning", "reasoning"),
                                  ("content", "content")):
                    piece = delta.get(key)
                    if piece:
                        if kind == "reasoning":
                            result.has_reasoning_field = True
                            result.reasoning += piece
                        else:
                            result.content += piece
                        result.chunks += 1
                        on_delta(kind, piece)
                        break
                if choice.get("finish_reason"):
                    result.finish_reason = choice["finish_reason"]


def classify_request_error(status: int, message: str, base_url: str) -> ServerError:
    """A refused request (4xx/5xx with the server's message) -> an error naming the input that caused it."""
    low = message.lower()
    if "context length" in low or "maximum context" in low or "max_model_len" in low or "too long" in low \
            or "exceed" in low and "token" in low:
        return ServerError("max_new_tokens", f"the prompt and answer do not fit the served model's context "
                           f"(server said: {message}).", "Lower max_new_tokens, use fewer or smaller images "
                           "(max_visual_tokens) or frames, or start the server with a larger --max-model-len.")
    if ("at most" in low or "limit" in low) and ("image" in low or "video" in low or "multimodal" in low):
        return ServerError("image", f"the server refused the images or video (server said: {message}).",
                           "Send fewer images per prompt, or raise the server's limit (vLLM: --limit-mm-per-prompt "
                           "'{\"image\": 8, \"video\": 1}').")
    if status in (401, 403):
        return ServerError("api_key_env", f"the server refused the request ({status}: {message}).",
                           "Set api_key_env to the name of an environment variable holding the key.")
    if "media_io_kwargs" in low or "mm_processor_kwargs" in low:
        return ServerError("video", f"the server refused the video's frame times (server said: {message}).",
                           "Start vLLM with --trust-request-mm-kwargs so that the frames keep their true "
                           "timestamps, or describe the video with a local model.")
    return ServerError("base_url", f"the server at {base_url} refused the request ({status}: {message}).",
                       "Check the server's log and that the served model is a Qwen3-VL (vision) model.")
