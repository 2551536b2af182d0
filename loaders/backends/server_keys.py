"""Secrets of the served engine: which API key a workflow may name, and keeping keys and passwords out of text.

A workflow is shared with its ``base_url`` and ``api_key_env``. If it could name any environment variable, a
downloaded workflow could send ComfyUI's ``AWS_SECRET_ACCESS_KEY`` or ``HF_TOKEN`` to a server of its author's
choice. So only variables meant for this pack are read: ``QWEN3VL_API_KEY`` or ``QWEN3VL_API_KEY_<SUFFIX>``.

A password in ``base_url`` (``http://user:pass@host/v1``) is taken out of the URL before it reaches httpx (whose
log lines carry the URL) and sent as a Basic ``Authorization`` header instead; every text the pack shows
(errors, ``info``, logs) carries the URL with ``***`` in place of the user and password.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import os
import re
import threading
from urllib.parse import unquote

from ...utils.errors import InputError

logger = logging.getLogger(__name__)

KEY_ENV_RULE = ("only QWEN3VL_API_KEY or QWEN3VL_API_KEY_<SUFFIX> (capital letters, digits and _) are read, so "
                "that a shared workflow cannot make ComfyUI send another secret (a cloud key, HF_TOKEN, "
                "OPENAI_API_KEY...) to a server of its choice")
KEY_ENV_ADVICE = ("Copy the key into such a variable before starting ComfyUI, e.g. export "
                  "QWEN3VL_API_KEY=\"$OPENAI_API_KEY\", and give that variable's NAME here (empty = no key).")
_KEY_ENV = re.compile(r"QWEN3VL_API_KEY(?:_[A-Z0-9_]+)?")
_KEY_CHARS = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no space: what fits an HTTP header unquoted
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s@]*@")
_WARNED: set[tuple[str, str]] = set()
_WARNED_LOCK = threading.Lock()
MAX_KEY_CHARS = 8192


def check_key_env(name: object, input_name: str = "api_key_env") -> str:
    """``api_key_env`` stripped; empty, or a variable name this pack may read. Refused before any request."""
    if not isinstance(name, str):
        raise InputError(input_name, f"must be text (a variable name), got {type(name).__name__}.", KEY_ENV_ADVICE)
    name = name.strip()
    if name and not _KEY_ENV.fullmatch(name):
        shown = name if len(name) <= 60 and name.isprintable() else repr(name[:60]) + "..."
        raise InputError(input_name, f"{shown} is not a key variable of this pack: {KEY_ENV_RULE}.", KEY_ENV_ADVICE)
    return name


def read_key(name: str, input_name: str = "api_key_env") -> str:
    """The key held by the (already checked) variable ``name``; "" when unset. Never quoted in an error."""
    if not name:
        return ""
    key = os.environ.get(check_key_env(name, input_name), "").strip()
    if key and (len(key) > MAX_KEY_CHARS or not _KEY_CHARS.fullmatch(key)):
        raise InputError(input_name, f"the key in {name} has characters an HTTP header cannot carry (a line break, "
                         f"a space, a control or non-ASCII character) or is over {MAX_KEY_CHARS} characters long.",
                         f"Set {name} to the bare key (e.g. export {name}=\"sk-...\" with no newline) and restart "
                         "ComfyUI.")
    return key


def split_userinfo(url: str) -> tuple[str, str, tuple[str, ...]]:
    """``http://user:pass@host/v1`` -> (``http://host/v1``, the Basic ``Authorization`` value, the texts to
    redact wherever a server echoes them); no userinfo: (url, "", ())."""
    match = re.match(r"(?i)([a-z][a-z0-9+.-]*://)([^/?#]*)@", url)
    if not match:
        return url, "", ()
    user, _, password = match.group(2).partition(":")
    pair = f"{unquote(user)}:{unquote(password)}"
    encoded = base64.b64encode(pair.encode()).decode("ascii")
    secrets = (match.group(2), pair, unquote(password), password, encoded)
    return match.group(1) + url[match.end():], "Basic " + encoded, tuple(s for s in secrets if s)


def redact_url(text: str) -> str:
    """Every ``scheme://user:pass@`` in ``text`` with ``***`` for the user and password."""
    return _USERINFO.sub(r"\1***@", text)


def shown_url(url: str, has_userinfo: bool) -> str:
    """The URL as errors, logs and ``info`` show it: ``http://***@host/v1`` when it carried a user/password."""
    if not has_userinfo:
        return url
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}***@{rest}" if sep else url


def scrub(text: object, secrets: tuple[str, ...] = (), limit: int = 300) -> str:
    """Server-sent text made safe to show: any secret replaced by ``***``, userinfo redacted, control
    characters escaped, at most ``limit`` characters."""
    if not isinstance(text, str):
        text = f"({type(text).__name__})"
    text = text[: limit * 4 + 4 * MAX_KEY_CHARS]
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    text = redact_url(text)
    text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text.strip())
    return text if len(text) <= limit else text[:limit] + "..."


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine (localhost, 127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_plain_http(url: str, scheme: str, host: str, what: str) -> None:
    """One warning per server and secret when a key or password would cross the network unencrypted."""
    if scheme != "http" or is_loopback(host):
        return
    with _WARNED_LOCK:
        if (url, what) in _WARNED:
            return
        _WARNED.add((url, what))
    logger.warning("the %s goes to %s over plain http:// (unencrypted): anyone on the network path can read it. "
                   "Use https:// for a server that is not on this machine.", what, url)
