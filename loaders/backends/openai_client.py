"""HTTP transport to an OpenAI-compatible chat-completions server (vLLM, SGLang, llama-server, Ollama, LM Studio).

Everything about the wire stays here and in its helpers: streaming (:mod:`.chat_stream`), bounded reads and
the no-progress timer (:mod:`.wire`), checks of every value a server sends (:mod:`.server_values`), keys and
redaction (:mod:`.server_keys`), bounded retries with backoff, and turning every failure into a ``ServerError``
that names the node input to fix. The API key is read at call time from ``api_key_env``, which may only name
``QWEN3VL_API_KEY`` or ``QWEN3VL_API_KEY_<SUFFIX>``; it is never stored in a workflow, logged or shown.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx

from ...utils.errors import InputError
from . import wire
from .chat_stream import Cancel, StreamFault, StreamResult, read_events
from .server_errors import ServerError, classify_request_error
from .server_keys import (
    check_key_destination,
    check_key_env,
    read_key,
    redact_url,
    scrub,
    shown_url,
    split_userinfo,
    warn_plain_http,
)
from .server_values import BadValue, detokenized, error_text, model_ids, retry_after, token_ids

__all__ = ["Cancel", "OpenAIClient", "ServerError", "StreamResult", "classify_request_error", "normalize_base_url"]
logger = logging.getLogger(__name__)
RETRY_STATUS = (429, 502, 503, 504)
RETRY_BASE_DELAY = 0.5  # seconds before the first retry; doubled each time, at most 8 s
MAX_BODY = 8 << 20  # /models, /tokenize, /detokenize answers, after decompression
MAX_ERROR_BODY = 64 << 10
# Anything else a server may make Python raise while the pack reads its answer: named, never passed on raw.
_READ_ERRORS = (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError, OverflowError,
                UnicodeError, MemoryError)


def normalize_base_url(base_url: str) -> str:
    """Check ``base_url`` (scheme, host) and return it without a trailing slash (userinfo kept)."""
    url = (base_url or "").strip().rstrip("/") if isinstance(base_url, str) else ""
    shown = redact_url(url)[:200]
    if not url:
        raise ServerError("base_url", "is empty.", "Give the server's OpenAI API address, e.g. http://127.0.0.1:8000/v1.")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as err:
        raise ServerError("base_url", f"{shown!r} is not a URL ({type(err).__name__}).",
                          "Use e.g. http://127.0.0.1:8000/v1.") from None  # the cause may quote the URL
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ServerError("base_url", f"{shown!r} has no http:// or https:// scheme and host.",
                          "Write the whole address, e.g. http://127.0.0.1:8000/v1 (vLLM), http://127.0.0.1:11434/v1 "
                          "(Ollama), http://127.0.0.1:1234/v1 (LM Studio), http://127.0.0.1:8080/v1 (llama-server).")
    return url


class OpenAIClient:
    """A small client: ``GET /models``, ``POST /chat/completions`` (streamed), vLLM's ``/tokenize``, ``/detokenize``.

    ``base_url`` (what errors and logs show) has ``***`` for a user/password; requests go to the URL without
    them, the password travelling as a Basic ``Authorization`` header (or the key as a Bearer one)."""

    def __init__(self, base_url: str, api_key_env: str = "", timeout_s: float = 120.0, retries: int = 3,
                 max_connections: int = 16):
        self._url, self._basic, self._userinfo = split_userinfo(normalize_base_url(base_url))
        self.base_url = shown_url(self._url, bool(self._basic))
        self.api_key_env = check_key_env(api_key_env)
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        parsed = httpx.URL(self._url)
        self._scheme, self._host, self._port = parsed.scheme, parsed.host, parsed.port
        if self._key():  # before any request: a key only goes where the user allowed it
            check_key_destination(self.api_key_env, self._scheme, self._host, self._port, self.base_url)
        self._root = self._url[: -len("/v1")] if self._url.endswith("/v1") else self._url
        self._http = wire.http_client(self.timeout_s, max_connections)

    def close(self) -> None:
        self._http.close()

    # --- pieces -------------------------------------------------------------------------------------------------
    def _key(self) -> str:
        return read_key(self.api_key_env)

    def _headers(self) -> dict:
        headers = {"Accept": "application/json", "Accept-Encoding": "gzip, deflate"}
        key = self._key()
        if key:
            check_key_destination(self.api_key_env, self._scheme, self._host, self._port, self.base_url)
            headers["Authorization"] = f"Bearer {key}"
            warn_plain_http(self.base_url, self._scheme, self._host, f"API key from {self.api_key_env}")
        elif self._basic:
            headers["Authorization"] = self._basic
            warn_plain_http(self.base_url, self._scheme, self._host, "password in base_url")
        return headers

    def _secrets(self) -> tuple[str, ...]:
        key = self._key() if self.api_key_env else ""
        return tuple(s for s in (key, *self._userinfo) if s)

    def _fail(self, problem: str, advice: str = "") -> ServerError:
        """An error naming base_url; ``problem`` (which may quote the server) is scrubbed of keys and passwords.
        Raised ``from None``: a cause could quote what the server sent."""
        problem = scrub(problem, self._secrets(), 600)
        return ServerError("base_url", f"the server at {self.base_url} {problem}.", advice or
                           "Is base_url an OpenAI-compatible server (vLLM, SGLang, llama-server, Ollama, LM Studio)? "
                           "Check its version and log.")

    def _auth_error(self, status: int, message: str) -> ServerError:
        if not self.api_key_env:
            why = "no api_key_env is set"
        elif not self._key():
            why = f"the environment variable {self.api_key_env} is not set (or empty) in ComfyUI's environment"
        else:
            why = f"the key in {self.api_key_env} was refused"
        return ServerError("api_key_env", f"the server at {self.base_url} wants an API key ({status}: {message}); "
                           f"{why}.", "Put the key in an environment variable named QWEN3VL_API_KEY or "
                           "QWEN3VL_API_KEY_<SUFFIX> before starting ComfyUI (e.g. export QWEN3VL_API_KEY=...) and "
                           "give that variable's NAME here.")

    def _timeout_error(self) -> ServerError:
        return ServerError("timeout_s", f"the server at {self.base_url} sent nothing usable for {self.timeout_s:g} s "
                           "(no answer, or no new token).", "Raise timeout_s if the server is busy or slow to "
                           "start, or check that it is running.")

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Every failure while asking ``what`` as a named error; nothing raw reaches the user."""
        try:
            yield
        except InputError:
            raise
        except httpx.TimeoutException:
            raise self._timeout_error() from None
        except (httpx.ConnectError, httpx.UnsupportedProtocol, httpx.ProxyError) as err:
            raise ServerError("base_url", f"cannot reach the server at {self.base_url} ({type(err).__name__}: "
                              f"{scrub(str(err), self._secrets(), 120)}).", "Start the server (see the README: vLLM, "
                              "llama-server, Ollama, LM Studio) or fix base_url; then run again.") from None
        except httpx.HTTPError as err:
            raise self._fail(f"broke the HTTP exchange for {what} ({type(err).__name__})") from None
        except (wire.BodyError, BadValue) as err:
            raise self._fail(f"sent a {what} answer the pack refuses: {err}") from None
        except _READ_ERRORS as err:
            raise self._fail(f"sent a {what} answer the pack cannot read ({type(err).__name__})") from None

    def _start(self, method: str, url: str, result: StreamResult | None = None, cancel: Cancel | None = None,
               **kwargs) -> httpx.Response:
        """Send, get the headers (streamed body, not read yet); bounded retries on connection errors and
        429/502/503/504. Each attempt has ``timeout_s`` for the whole wait for the headers."""
        delay = RETRY_BASE_DELAY
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            wire.progress()  # a fresh timer for each attempt
            try:
                response = self._http.send(self._http.build_request(method, url, headers=self._headers(), **kwargs),
                                           stream=True)
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
                if last:
                    raise
                logger.info("%s: no connection, retrying in %.1f s", self.base_url, delay)
            else:
                if response.status_code not in RETRY_STATUS or last:
                    return response
                wait = retry_after(response.headers.get("Retry-After"))
                delay = min(wait, 10.0) if wait is not None else delay
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

    def _message(self, response: httpx.Response) -> str:
        """The error text a server put in its body (OpenAI, vLLM, FastAPI), short, keys and passwords redacted."""
        try:
            body = wire.read_body(response, MAX_ERROR_BODY)
        except (httpx.HTTPError, wire.BodyError) as err:
            return f"(an unreadable error body: {scrub(str(err), self._secrets(), 80)})"
        try:
            text = error_text(wire.parse_json(body))
        except ValueError:
            text = body.decode("utf-8", "replace")
        return scrub(text, self._secrets())

    def _check_status(self, response: httpx.Response, what: str) -> None:
        status = response.status_code
        if status < 300:
            return
        if status < 400:
            where = scrub(response.headers.get("Location", "(no Location header)"), self._secrets(), 200)
            raise ServerError("base_url", f"the server at {self.base_url} redirected {what} ({status}) to {where}; "
                              "redirects are never followed (they could carry the key elsewhere).",
                              "Fix base_url: write the address the server really answers at (check http:// vs "
                              "https://, the host, and the /v1 path).")
        message = self._message(response)
        if status in (401, 403):
            raise self._auth_error(status, message)
        if status in RETRY_STATUS:
            raise ServerError("base_url", f"the server at {self.base_url} is busy or unavailable ({status}: {message}) "
                              f"after {self.retries} retries.", "Wait and run again, lower max_concurrency, or add "
                              "replicas behind a load balancer.")
        if status == 404 and what == "/models":
            raise ServerError("base_url", f"{self.base_url}/models does not exist (404): not an OpenAI-compatible API "
                              "address.", "base_url usually ends in /v1, e.g. http://127.0.0.1:8000/v1.")
        raise classify_request_error(status, message, self.base_url)

    def _get_json(self, method: str, url: str, what: str, missing_ok: bool = False, **kwargs) -> object:
        """A small JSON answer, checked status, body capped after decompression (``missing_ok``: None on 404)."""
        with wire.deadline(self.timeout_s):
            response = self._start(method, url, **kwargs)
            try:
                if missing_ok and response.status_code in (404, 405):
                    return None
                self._check_status(response, what)
                return wire.parse_json(wire.read_body(response, MAX_BODY))
            finally:
                response.close()

    # --- API ----------------------------------------------------------------------------------------------------
    def list_models(self) -> list[str]:
        """The served model ids (entries without a usable string id are skipped; none left is an error)."""
        with self._errors("/models"):
            try:
                models, ignored = model_ids(self._get_json("GET", self._url + "/models", "/models"))
            except InputError:
                raise
            except ValueError as err:  # BadValue too
                raise self._fail(f"did not answer with an OpenAI model list at /models ({scrub(str(err), (), 120)})",
                                 "Point base_url at the server's OpenAI API, e.g. http://127.0.0.1:8000/v1.") from None
        secrets = [secret for secret in self._secrets() if len(secret) >= 4]
        echoed = [m for m in models if any(secret in m for secret in secrets)]
        models = [m for m in models if m not in echoed]  # a model "named" after the key is never shown
        ignored += len(echoed)
        if ignored:
            logger.warning("%s/models: %d entr%s without a usable id ignored", self.base_url, ignored,
                           "y" if ignored == 1 else "ies")
        if not models and ignored:
            raise self._fail(f"lists {ignored} model(s), none with a usable id (a non-empty name)",
                             "Check the server's version and how it was started.")
        return models

    def tokenize(self, model: str, messages: list[dict], **extra) -> list[int] | None:
        """vLLM / SGLang ``/tokenize`` of a chat (at the server root, beside /v1); None when the server has none
        or answers something unusable (logged): only the thinking check asks for it."""
        body = {"model": model, "messages": messages, "add_generation_prompt": True, **extra}
        return self._optional("/tokenize", token_ids, json=body)

    def detokenize(self, model: str, tokens: list[int]) -> str | None:
        return self._optional("/detokenize", detokenized, json={"model": model, "tokens": tokens})

    def _optional(self, path: str, check: Callable[[object], object], **kwargs):
        try:
            value = self.root_json("POST", path, check, **kwargs)
        except ServerError as err:
            logger.info("%s: %s gave no usable answer, so it is not known whether the model's prompt opens "
                        "<think> (%s)", self.base_url, path, err)
            return None
        if value is None:
            logger.debug("%s: no %s (not vLLM/SGLang): thinking prompt unknown", self.base_url, path)
        return value

    def root_json(self, method: str, path: str, check: Callable[[object], object] = lambda body: body, **kwargs):
        """A small JSON answer from the server's root (beside /v1), bounded like every other read and passed
        through ``check`` (a BadValue becomes a ServerError); None when the server has no such endpoint."""
        with self._errors(path):
            body = self._get_json(method, self._root + path, path, missing_ok=True, **kwargs)
            return None if body is None else check(body)

    def stream_chat(self, payload: dict, on_delta: Callable[[str, str], None], cancel: Cancel) -> StreamResult:
        """POST a streamed chat completion; ``on_delta(kind, text)`` per piece (kind "content" or "reasoning").
        Ends within ``max_tokens`` + a margin of pieces, and within ``timeout_s`` of the last progress."""
        payload = {**payload, "stream": True, "stream_options": {"include_usage": True}}
        result = StreamResult()
        with self._errors("chat"), wire.deadline(self.timeout_s):
            response = self._start("POST", self._url + "/chat/completions", result, cancel, json=payload)
            cancel.register(response)
            try:
                self._check_status(response, "/chat/completions")
                read_events(response, result, on_delta, cancel, int(payload.get("max_tokens") or 0))
            except StreamFault as fault:
                if fault.status:
                    raise classify_request_error(fault.status, scrub(fault.message, self._secrets()),
                                                 self.base_url) from None
                raise self._fail(scrub(fault.problem, self._secrets())) from None
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.StreamClosed) as err:
                if cancel.is_set():
                    return result
                raise self._cut_off(result, err) from None
            finally:
                cancel.unregister(response)
                response.close()
        self._redact(result)
        if result.stopped_early:
            logger.warning("%s %s: the pack stopped reading and closed the stream (%d pieces kept).", self.base_url,
                           result.stopped_early, result.chunks)
        if result.finish_reason is None and not cancel.is_set():
            if not result.events:
                kind = scrub(response.headers.get("Content-Type", "none"), self._secrets(), 60)
                raise self._fail(f"answered the streamed chat request without server-sent events (Content-Type: "
                                 f"{kind})")
            raise self._cut_off(result, None)
        return result

    def _redact(self, result: StreamResult) -> None:
        """A key or password the server echoes in its answer is not shown either."""
        for secret in self._secrets():
            if len(secret) >= 4:
                result.content = result.content.replace(secret, "***")
                result.reasoning = result.reasoning.replace(secret, "***")
        if result.finish_reason is not None:
            result.finish_reason = scrub(result.finish_reason, self._secrets(), 64)
        result.stopped_early = scrub(result.stopped_early, self._secrets(), 200) if result.stopped_early else ""

    def _cut_off(self, result: StreamResult, err: Exception | None) -> ServerError:
        why = f" ({type(err).__name__})" if err is not None else ""
        return ServerError("base_url", f"the server at {self.base_url} closed the answer stream after "
                           f"{result.chunks} token(s) without finishing{why}: it may have stopped or crashed.",
                           "Check the server (its log), restart it, then run again; finished answers are kept.")
