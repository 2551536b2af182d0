"""Secrets stay where they belong: which key a workflow may name, and no key or password in any text.

Against the hostile server of tests/hostile_server.py (127.0.0.1 only).
"""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
import traceback
import uuid
from pathlib import Path

import pytest

from qwen3vl_pack.loaders.backends import server_keys
from qwen3vl_pack.loaders.backends.openai_client import OpenAIClient
from qwen3vl_pack.loaders.backends.served import ServerBundle, connect
from qwen3vl_pack.loaders.tasks import ask
from qwen3vl_pack.nodes.generate import Qwen3VLGenerate
from qwen3vl_pack.nodes.server import Qwen3VLServerModel
from qwen3vl_pack.utils.errors import InputError
from qwen3vl_pack.utils.presets import resolve_options

from . import hostile_server as hs

ROOT = Path(__file__).resolve().parents[1]
SECRET = "AKIAsecret-0123456789"
CHAT = ("POST", "/v1/chat/completions")


pytestmark = pytest.mark.usefixtures("fast_served")  # quick retries, no remembered answers


@pytest.fixture()
def server():
    with hs.HostileServer() as s:
        yield s


def _ask(bundle):
    return ask(bundle, f"hi {uuid.uuid4().hex}", resolve_options("Greedy", 8, 0))


def _authorizations(server) -> list[str]:
    return [headers.get("Authorization", "") for _, _, headers in server.requests]


# --- which variable a workflow may name ------------------------------------------------------------------------

BAD_NAMES = ["AWS_SECRET_ACCESS_KEY", "HF_TOKEN", "OPENAI_API_KEY", "QWEN3VL_API_KEYX", "qwen3vl_api_key",
             "QWEN3VL_API_KEY_lab", "QWEN3VL_API_KEY_", "QWEN3VL_API_KEY-LAB", "QWEN3VL_API_KEY LAB", "PATH",
             "QWEN3VL_API_KEY\nX", "QWEN3VL_API_KEY_\u00c9"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_workflow_cannot_name_another_secret(server, monkeypatch, name):
    if "\n" not in name and "\u00c9" not in name and " " not in name:
        monkeypatch.setenv(name, SECRET)
    for call in (lambda: connect(server.url, api_key_env=name),
                 lambda: Qwen3VLServerModel().connect(server.url, "", name, 30.0, 4, True),
                 lambda: _ask(ServerBundle(server.url, hs.MODEL, api_key_env=name))):
        with pytest.raises(InputError) as err:
            call()
        text = str(err.value)
        assert text.startswith("api_key_env:") and "QWEN3VL_API_KEY_<SUFFIX>" in text, text
        assert 'export QWEN3VL_API_KEY="$OPENAI_API_KEY"' in text and SECRET not in text
    assert server.requests == []  # refused before any request


@pytest.mark.parametrize("name", ["QWEN3VL_API_KEY", "QWEN3VL_API_KEY_LAB", "QWEN3VL_API_KEY_2"])
def test_the_packs_own_key_variables_are_sent(server, monkeypatch, name):
    monkeypatch.setenv(name, "sk-good-key")
    bundle = Qwen3VLServerModel().connect(server.url, "", f"  {name} ", 30.0, 4, True)[0]
    assert _ask(bundle).text == "w0 w1 w2 w3"
    assert set(_authorizations(server)) == {"Bearer sk-good-key"}


def test_the_cli_follows_the_same_rule(server, monkeypatch):
    env = {**os.environ, "AWS_SECRET_ACCESS_KEY": SECRET, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, str(ROOT / "cli.py"), "ask", "--server", server.url, "--api-key-env",
                          "AWS_SECRET_ACCESS_KEY", "hi"], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 2 and "--api-key-env: AWS_SECRET_ACCESS_KEY is not a key variable" in out.stderr
    assert SECRET not in out.stderr + out.stdout and server.requests == []


@pytest.mark.parametrize("key", ["abc\r\nX-Evil: 1", "abc\ndef", "cl\u00e9-secr\u00e8te", "two words", "tab\there",
                                 "x" * 9000])
def test_keys_that_cannot_be_a_header_are_refused_unquoted(server, monkeypatch, key):
    monkeypatch.setenv("QWEN3VL_API_KEY", key)
    with pytest.raises(InputError) as err:
        connect(server.url, api_key_env="QWEN3VL_API_KEY")
    text = str(err.value)
    assert text.startswith("api_key_env:") and "QWEN3VL_API_KEY" in text
    assert key not in text and key[:3] + key[3:6] not in text.replace("QWEN3VL", "")
    assert server.requests == []


# --- no key or password in any text -----------------------------------------------------------------------------

def test_password_in_base_url_never_printed(server, caplog):
    url = server.url.replace("http://", "http://alice:pa55word@")
    with caplog.at_level(logging.DEBUG):  # every logger, httpx and httpcore included, at every level
        bundle = connect(url)
        result = _ask(bundle)
        info = Qwen3VLGenerate().generate(bundle, "hi there", "Greedy", 8)[2]
        with pytest.raises(InputError) as err:
            connect(url, model="not-served")
        server.script[CHAT] = lambda h, b: hs.body(h, {"error": {"message": "bad alice:pa55word here"}}, 400)
        with pytest.raises(InputError) as refused:
            _ask(bundle)
    texts = [caplog.text, repr(bundle), str(bundle), info, str(err.value), str(refused.value), repr(result)]
    assert [t for t in texts if "pa55word" in t] == []
    assert "HTTP Request:" in caplog.text and any(r.name.startswith("httpcore") for r in caplog.records)
    assert "http://***@127.0.0.1" in str(err.value) and bundle.base_url.startswith("http://***@")
    basic = "Basic " + base64.b64encode(b"alice:pa55word").decode()
    assert set(_authorizations(server)) == {basic}  # still sent, as a header, to the host it names


@pytest.mark.parametrize("url", ["http://bob:hunter2@127.0.0.1:1/v1", "http://bob:hunter2@[::1/v1",
                                 "http://bob:hunter2@127.0.0.1:99999999/v1", "ftp://bob:hunter2@127.0.0.1/v1"])
def test_password_in_a_bad_or_dead_base_url_never_printed(url, caplog):
    with caplog.at_level(logging.DEBUG), pytest.raises(InputError) as err:
        connect(url, timeout_s=2)
    assert str(err.value).startswith("base_url:") and "hunter2" not in str(err.value) + caplog.text


ECHOES = ["401 json", "403 text", "400 error event", "500 html", "stream not json", "finish_reason", "bad header",
          "usage text", "error code"]


@pytest.mark.parametrize("where", ECHOES)
def test_a_key_echoed_by_the_server_is_redacted(server, monkeypatch, where):
    """Nor is it in the error's traceback as ComfyUI logs it (no chained cause quoting the server)."""
    key = "sk-live-" + "q" * 24
    monkeypatch.setenv("QWEN3VL_API_KEY_ECHO", key)
    bundle = connect(server.url, api_key_env="QWEN3VL_API_KEY_ECHO")
    answers = {
        "401 json": lambda h, b: hs.body(h, {"error": {"message": f"Incorrect API key provided: '{key}'"}}, 401),
        "403 text": lambda h, b: hs.body(h, f"forbidden for Bearer {key}", 403),
        "400 error event": lambda h, b: hs.stream(h, [{"error": {"message": f"key {key} over quota", "code": 400}}]),
        "500 html": lambda h, b: hs.body(h, f"<pre>Authorization: Bearer {key}</pre>", 500),
        "stream not json": lambda h, b: hs.stream(h, [f"data: {key}\n\n"]),
        "finish_reason": lambda h, b: hs.stream(h, [{"choices": [{"delta": {}, "finish_reason": 7}]},
                                                    {"choices": [{"delta": {}, "finish_reason": key}]}]),
        "bad header": lambda h, b: (h.wfile.write(f"HTTP/1.1 200 OK\r\n{key}\r\n\r\n".encode()), h.wfile.flush()),
        "usage text": lambda h, b: hs.stream(h, [{"choices": [], "usage": {"prompt_tokens": key}}]),
        "error code": lambda h, b: hs.stream(h, [{"error": {"message": key[::-1], "code": key}}]),
    }
    server.script[CHAT] = answers[where]
    with pytest.raises(InputError) as err:
        _ask(bundle)
    logged = "".join(traceback.format_exception(err.value))
    assert key not in logged and err.value.input_name in ("base_url", "api_key_env")


def test_a_model_named_after_the_key_is_never_shown(server, monkeypatch, caplog):
    key = "sk-live-" + "m" * 24
    monkeypatch.setenv("QWEN3VL_API_KEY", key)
    server.script[("GET", "/v1/models")] = lambda h, b: hs.body(h, {"data": [{"id": f"model-{key}"}, {"id": "ok"}]})
    with caplog.at_level(logging.DEBUG):
        assert connect(server.url, api_key_env="QWEN3VL_API_KEY").model == "ok"
        with pytest.raises(InputError) as err:
            connect(server.url, model="other", api_key_env="QWEN3VL_API_KEY")
    assert key not in caplog.text + str(err.value) and "it serves: ok." in str(err.value)


def test_a_key_echoed_in_an_answer_is_redacted(server, monkeypatch, caplog):
    key = "sk-live-" + "z" * 24
    monkeypatch.setenv("QWEN3VL_API_KEY", key)
    bundle = connect(server.url, api_key_env="QWEN3VL_API_KEY")
    server.script[CHAT] = lambda h, b: hs.stream(h, [hs.delta(f"your key is {key[:10]}"), hs.delta(key[10:] + "."),
                                                     {"choices": [{"delta": {}, "finish_reason": key}]},
                                                     "data: [DONE]\n\n"])
    with caplog.at_level(logging.DEBUG):
        result = _ask(bundle)
        info = Qwen3VLGenerate().generate(bundle, "hi", "Greedy", 8)[2]
    assert result.text == "your key is ***." and result.finish_reason == "***"
    assert key not in info + caplog.text + repr(result)


def test_plain_http_to_another_host_warns_once(caplog, monkeypatch):
    monkeypatch.setenv("QWEN3VL_API_KEY", "sk-1")
    monkeypatch.setenv("QWEN3VL_KEY_HOSTS", "10.20.30.40")
    monkeypatch.setattr(server_keys, "_WARNED", set())
    remote = OpenAIClient("http://10.20.30.40:8000/v1", "QWEN3VL_API_KEY")  # never contacted: headers only
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert remote._headers()["Authorization"] == "Bearer sk-1"
        for url in ("https://10.20.30.40/v1", "http://127.0.0.1:8000/v1", "http://localhost:1/v1", "http://[::1]:1/v1"):
            OpenAIClient(url, "QWEN3VL_API_KEY")._headers()
        OpenAIClient("http://u:p@10.9.9.9/v1")._headers()
    warnings = [r.getMessage() for r in caplog.records if "plain http://" in r.getMessage()]
    assert len(warnings) == 2 and "10.20.30.40" in warnings[0] and "sk-1" not in caplog.text
    assert "password in base_url" in warnings[1] and "http://***@10.9.9.9" in warnings[1]


@pytest.mark.parametrize("url", ["http://10.20.30.40:8000/v1", "https://evil.example/v1", "http://127.0.0.1.evil.example/v1",
                                 "http://localhost.evil.example:80/v1", "https://api.example.com:8443/v1"])
def test_a_key_never_goes_to_a_host_the_user_did_not_list(monkeypatch, url):
    """A workflow sets base_url and api_key_env together: the user's QWEN3VL_API_KEY must not follow base_url to
    a server of the workflow author's choice. Refused before any request, naming api_key_env and the rule."""
    monkeypatch.setenv("QWEN3VL_API_KEY", "sk-secret-value")
    monkeypatch.setenv("QWEN3VL_KEY_HOSTS", "api.example.com:443, lab.internal")
    with pytest.raises(InputError) as err:
        OpenAIClient(url, "QWEN3VL_API_KEY")
    text = str(err.value)
    assert text.startswith("api_key_env") and "QWEN3VL_KEY_HOSTS" in text and "sk-secret-value" not in text
    with pytest.raises(InputError, match="QWEN3VL_KEY_HOSTS"):
        connect(url, "", "QWEN3VL_API_KEY", 5.0, 1, True)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/v1", "http://localhost:9/v1", "http://[::1]:9/v1",
                                 "https://api.example.com/v1", "https://API.example.com:443/v1",
                                 "http://lab.internal:8000/v1"])
def test_a_key_goes_to_this_machine_and_to_the_hosts_listed(monkeypatch, url):
    monkeypatch.setenv("QWEN3VL_API_KEY", "sk-1")
    monkeypatch.setenv("QWEN3VL_KEY_HOSTS", "api.example.com:443, lab.internal")
    assert OpenAIClient(url, "QWEN3VL_API_KEY")._headers()["Authorization"] == "Bearer sk-1"


def test_no_key_no_host_rule(monkeypatch):
    """Without a key (variable unset, or no api_key_env) nothing secret is sent: any host may be named."""
    monkeypatch.delenv("QWEN3VL_API_KEY", raising=False)
    monkeypatch.delenv("QWEN3VL_KEY_HOSTS", raising=False)
    assert "Authorization" not in OpenAIClient("https://elsewhere.example/v1", "QWEN3VL_API_KEY")._headers()
    assert "Authorization" not in OpenAIClient("https://elsewhere.example/v1", "")._headers()
