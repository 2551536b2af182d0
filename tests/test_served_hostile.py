"""The served client against a hostile server (tests/hostile_server.py, 127.0.0.1 only).

Every value a server sends is checked: a wrong type, an absurd number or hostile nesting gives a named error
(never a raw Python exception), every unbounded answer ends within its bound, and after every case the next
normal call on the same bundle works.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid

import pytest

from qwen3vl_pack.loaders.backends import chat_stream
from qwen3vl_pack.loaders.backends.served import connect
from qwen3vl_pack.loaders.tasks import ask
from qwen3vl_pack.utils.errors import InputError
from qwen3vl_pack.utils.presets import resolve_options

from . import hostile_server as hs

CHAT = ("POST", "/v1/chat/completions")
MODELS = ("GET", "/v1/models")


pytestmark = pytest.mark.usefixtures("fast_served")  # quick retries, no remembered answers


@pytest.fixture()
def server():
    with hs.HostileServer() as s:
        yield s


def _ask(bundle, max_new_tokens: int = 8):
    return ask(bundle, f"hi {uuid.uuid4().hex}", resolve_options("Greedy", max_new_tokens, 0))


def _works_again(server, bundle) -> None:
    server.script.clear()
    assert _ask(bundle).text == "w0 w1 w2 w3"
    assert connect(server.url).model == hs.MODEL


def _events(*events):
    return lambda h, body: hs.stream(h, events)


def _raw(text: str):
    return _events(text)


# --- every server value checked: a named error, never a raw exception -----------------------------------------

CHAT_CASES = {
    "content is a number": _events({"choices": [{"delta": {"content": 5}}]}),
    "content is an object": _events({"choices": [{"delta": {"content": {"a": 1}}}]}),
    "choices holds text": _events({"choices": ["x"]}),
    "choices is an object": _events({"choices": {"0": 1}}),
    "delta is text": _events({"choices": [{"delta": "abc"}]}),
    "finish_reason is a number": _events({"choices": [{"delta": {}, "finish_reason": 5}]}),
    "usage.prompt_tokens is text": _events(hs.delta("a", "stop"), {"choices": [], "usage": {"prompt_tokens": "many"}}),
    "usage.prompt_tokens is 1e400": _raw('data: {"choices": [], "usage": {"prompt_tokens": 1e400}}\n\n'),
    "usage.completion_tokens is -3": _events({"choices": [], "usage": {"completion_tokens": -3}}),
    "usage is a list": _events({"choices": [], "usage": [1]}),
    "event nested 100,000 deep": _raw("data: " + hs.nested(100_000) + "\n\n"),
    "event is a list": _raw("data: [1, 2]\n\n"),
    "event is not UTF-8": lambda h, b: hs.stream(h, [b"data: {\"a\": \"\xff\xfe\"}\n\n"]),
    "event has a 5000-digit number": _raw('data: {"choices": [], "x": ' + "9" * 5000 + "}\n\n"),
    "error code is a superscript": _events({"error": {"message": "bad", "code": "\u00b2"}}),
    "error code has 5000 digits": _raw('data: {"error": {"message": "bad", "code": ' + "7" * 5000 + "}}\n\n"),
    "error is nested deep": _raw('data: {"error": ' + hs.nested(100_000) + "}\n\n"),
    "error message is an object": _events({"error": {"message": {"deep": [1]}, "code": 400}}),
    "error body nested deep": lambda h, b: hs.body(h, '{"error": ' + hs.nested(100_000) + "}", 400),
    "error body is not UTF-8": lambda h, b: hs.body(h, b"\xff\xfe\x00bad", 500),
    "error body gzip is broken": lambda h, b: hs.body(h, b"not gzip", 400, {"Content-Encoding": "gzip"}),
    "stream gzip is broken": lambda h, b: (hs.head(h, 200, {"Content-Type": "text/event-stream", "Content-Encoding":
                                           "gzip", "Content-Length": "8"}), h.wfile.write(b"notgzip!")),
    "stream encoded twice": lambda h, b: hs.body(h, hs.gzipped(hs.gzipped(b"data: [DONE]\n\n")), 200,
                                                 {"Content-Encoding": "gzip, gzip"}),
    "stream in brotli": lambda h, b: hs.body(h, b"xx", 200, {"Content-Encoding": "br"}),
    "bad status line": lambda h, b: (h.wfile.write(b"HTTP/1.1 abc\r\n\r\n"), h.wfile.flush()),
    "status 999": lambda h, b: hs.body(h, {}, 999),
    "redirect": lambda h, b: hs.body(h, "", 307, {"Location": "http://user:pw@127.0.0.1:1/elsewhere"}),
    "Retry-After is a superscript": lambda h, b: hs.body(h, {"error": "busy"}, 503, {"Retry-After": "\u00b2"}),
    "Retry-After is huge digits": lambda h, b: hs.body(h, {"error": "busy"}, 429, {"Retry-After": "9" * 5000}),
    "Content-Length is text": lambda h, b: _write(h, b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n"),
    "two Content-Lengths": lambda h, b: _write(h, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n"),
    "a NUL in a header": lambda h, b: _write(h, b"HTTP/1.1 200 OK\r\nX-A: \x00\r\n\r\n"),
    "100,000 header lines": lambda h, b: _write(h, b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 100_000 + b"\r\n"),
    "a broken chunk size": lambda h, b: _write(h, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
    "closes at once": lambda h, b: h.connection.shutdown(2),
    "a JSON body, not a stream": lambda h, b: hs.body(h, {"choices": [{"message": {"content": "hi"}}]}),
    "an empty data line": _events("data: \n\n"),
    "1xx answers forever": lambda h, b: [_write(h, b"HTTP/1.1 102 Processing\r\n\r\n") or time.sleep(0.05)
                                         for _ in range(200) if not h.server_ref.stop.is_set()],
}


def _write(h, data: bytes) -> None:
    h.wfile.write(data)
    h.wfile.flush()


@pytest.mark.parametrize("case", list(CHAT_CASES))
def test_hostile_chat_values_give_named_errors(server, case):
    bundle = connect(server.url, timeout_s=5)
    server.script[CHAT] = CHAT_CASES[case]
    with pytest.raises(InputError) as err:
        _ask(bundle)
    text = str(err.value)
    assert err.value.input_name in ("base_url", "max_new_tokens", "timeout_s"), text
    if err.value.input_name == "base_url":
        assert server.url in text or "redirect" in text
    assert "Traceback" not in text and len(text) < 1500
    if case == "redirect":
        assert "http://***@127.0.0.1:1/elsewhere" in text and "pw" not in text
    _works_again(server, bundle)


def _models(data):
    return lambda h, b: hs.body(h, data)


MODELS_CASES = {
    "html page": lambda h, b: hs.body(h, "<html><body>Welcome to nginx!</body></html>", 200,
                                      {"Content-Type": "text/html"}),
    "a JSON list": _models([1, 2]),
    "data is text": _models({"data": "x"}),
    "no id in any entry": _models({"data": [{"id": None}, {"name": "x"}, "y", {"id": ""}, {"id": 5}]}),
    "nested 100,000 deep": _models('{"data": ' + hs.nested(100_000) + "}"),
    "a 5000-digit number": _models('{"data": [], "n": ' + "1" * 5000 + "}"),
    "not UTF-8": _models(b"\xff\xfe{\x00"),
    "empty body": _models(b""),
    "error body nested deep": lambda h, b: hs.body(h, hs.nested(100_000), 500),
    "redirect to https": lambda h, b: hs.body(h, "", 301, {"Location": "https://127.0.0.1:1/v1/models"}),
    "gzip of gzip": lambda h, b: hs.body(h, hs.gzipped(hs.gzipped(b"{}")), 200, {"Content-Encoding": "gzip, gzip"}),
}


@pytest.mark.parametrize("case", list(MODELS_CASES))
def test_hostile_model_lists_give_named_errors(server, case):
    bundle = connect(server.url, timeout_s=5)
    server.script[MODELS] = MODELS_CASES[case]
    with pytest.raises(InputError) as err:
        connect(server.url, timeout_s=5)
    text = str(err.value)
    assert text.startswith("base_url:") and server.url in text, text
    if case.startswith("redirect"):
        assert "https://127.0.0.1:1/v1/models" in text and "Fix base_url" in text
    _works_again(server, bundle)


def test_models_without_a_string_id_are_skipped(server, caplog):
    server.script[MODELS] = _models({"data": [{"id": None}, {"id": 7}, {"id": "real-model"}, {"id": "bad\nid"}]})
    with caplog.at_level(logging.WARNING):
        assert connect(server.url).model == "real-model"
    assert "3 entries without a usable id ignored" in caplog.text


TOKENIZE_CASES = {
    "html": lambda h, b: hs.body(h, "<html>hi</html>", 200, {"Content-Type": "text/html"}),
    "a JSON list": _models([1, 2, 3]),
    "tokens is text": _models({"tokens": "abc"}),
    "tokens hold text": _models({"tokens": [1, "a", 3]}),
    "tokens hold floats": _models({"tokens": [1.5]}),
    "nested deep": _models(hs.nested(100_000)),
    "500": lambda h, b: hs.body(h, {"error": "boom"}, 500),
    "400": lambda h, b: hs.body(h, {"error": "no"}, 400),
}


@pytest.mark.parametrize("case", list(TOKENIZE_CASES))
def test_server_model_works_when_tokenize_answers_nonsense(server, case, caplog):
    """/models worked: the thinking check is then unknown (None, logged), the node does not fail."""
    server.script[("POST", "/tokenize")] = TOKENIZE_CASES[case]
    with caplog.at_level(logging.INFO):
        bundle = connect(server.url)
    assert bundle.model == hs.MODEL and bundle.opens_think is None
    assert "/tokenize gave no usable answer" in caplog.text
    _works_again(server, bundle)


@pytest.mark.parametrize("answer", [[1, 2], {"prompt": 5}, {"prompt": ["<think>"]}, "<html>", hs.nested(50_000)])
def test_server_model_works_when_detokenize_answers_nonsense(server, answer):
    server.script[("POST", "/tokenize")] = _models({"tokens": [1, 2, 3]})
    server.script[("POST", "/detokenize")] = _models(answer)
    bundle = connect(server.url)
    assert bundle.opens_think is None
    server.script[("POST", "/detokenize")] = _models({"prompt": "<|im_start|>assistant\n<think>\n"})
    assert connect(server.url).opens_think is True


def test_u2028_and_u0085_inside_a_json_string_are_not_line_ends(server):
    """SSE lines end only at CR, LF or CRLF; raw U+2028 / U+0085 in a JSON string stay in the text."""
    text = "a\u2028b\u0085c\u000bd\u000ce\u001cf"
    raw = 'data: {"choices": [{"delta": {"content": "' + text + '"}}]}\r\n\r\n'
    server.script[CHAT] = _events(raw, hs.delta("", "stop"), "data: [DONE]\r\n\r\n")
    result = _ask(connect(server.url))
    assert result.text == text.strip()


def test_crlf_split_across_network_chunks(server):
    pieces = ["data: ", '{"choices": [{"delta": {"content": "x"}}]}\r', "\n\r", "\n", 'data: {"choices": [{"delta"',
              ': {}, "finish_reason": "stop"}]}\r', "\r", "data: [DONE]\n\n"]
    server.script[CHAT] = _events(*pieces)
    assert _ask(connect(server.url)).text == "x"


def test_stream_keeps_usage_and_reasoning(server):
    server.script[CHAT] = _events({"choices": [{"delta": {"reasoning_content": "think "}}]}, hs.delta("yes"),
                                  hs.delta("", "stop"), {"choices": [], "usage": {"prompt_tokens": 11,
                                                                                  "completion_tokens": 2.0}},
                                  "data: [DONE]\n\n")
    result = _ask(connect(server.url))
    assert (result.thinking, result.text, result.prompt_tokens, result.new_tokens) == ("think", "yes", 11, 2)


# --- every unbounded answer ends within its bound ----------------------------------------------------------------

def _flood(item, pause=0.0):
    def answer(h, body):
        server = h.server_ref
        hs.stream(h, hs.forever(item, server.stop, pause), server.stop)
    return answer


UNBOUNDED = {
    # name: (script, max seconds, expected: "result" or the input the error names). timeout_s is 1 s; the bounds
    # leave room for a loaded CI machine (each case would run for minutes or forever without its bound)
    "tokens past max_tokens, never finishing": (_flood(hs.delta("w ")), 10, "result"),
    "tokens after finish_reason": (lambda h, b: hs.stream(h, itertools.chain([hs.delta("a ", "stop")], hs.forever(
        hs.delta("x "), h.server_ref.stop)), h.server_ref.stop), 10, "result"),
    "SSE comments forever": (_flood(": keep-alive\n\n", 0.01), 6, "timeout_s"),
    "choices: [] forever": (_flood({"choices": []}, 0.01), 6, "timeout_s"),
    "empty deltas forever": (_flood(hs.delta(""), 0.01), 6, "timeout_s"),
    "headers dripped": (lambda h, b: hs.drip(h, b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 10_000, 0.1,
                                             h.server_ref.stop), 6, "timeout_s"),
    "one line dripped": (lambda h, b: (hs.head(h, 200, {"Content-Type": "text/event-stream"}),
                                       hs.drip(h, b"data: " + b"a" * 10_000, 0.1, h.server_ref.stop)), 6, "timeout_s"),
    "8 KB comments flood (50 MB)": (lambda h, b: hs.stream(h, [": " + "x" * 8190 + "\n"] * 6400, h.server_ref.stop),
                                    10, "base_url"),
    "8 KB content events (50 MB)": (lambda h, b: hs.stream(h, [hs.delta("x" * 8192)] * 6400, h.server_ref.stop), 10,
                                    "result"),
    "a 50 MB line": (lambda h, b: hs.stream(h, [b"data: " + b"a" * (1 << 16)] * 800, h.server_ref.stop), 10,
                     "base_url"),
}


@pytest.mark.parametrize("case", list(UNBOUNDED))
def test_unbounded_answers_end_within_their_bound(server, case, caplog):
    script, bound, expected = UNBOUNDED[case]
    bundle = connect(server.url, timeout_s=1)
    server.script[CHAT] = script
    start = time.perf_counter()
    if expected == "result":
        with caplog.at_level(logging.WARNING):
            result = _ask(bundle, 8)
        assert result.new_tokens <= 8 + chat_stream.TOKEN_MARGIN
        assert "the pack stopped reading and closed the stream" in caplog.text
    else:
        with pytest.raises(InputError) as err:
            _ask(bundle, 8)
        assert err.value.input_name == expected, str(err.value)
    seconds = time.perf_counter() - start
    assert seconds < bound, f"{case}: {seconds:.2f} s"
    print(f"\nBOUND {case}: gave up after {seconds:.2f} s")
    _works_again(server, bundle)


@pytest.mark.parametrize("case", ["headers dripped", "body dripped", "50 MB body"])
def test_unbounded_model_lists_end_within_their_bound(server, case):
    scripts = {
        "headers dripped": lambda h, b: hs.drip(h, b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 10_000, 0.1, server.stop),
        "body dripped": lambda h, b: (hs.head(h, 200, {"Content-Length": "10000"}),
                                      hs.drip(h, b"{" * 10_000, 0.1, server.stop)),
        "50 MB body": lambda h, b: hs.body(h, b'{"data": [], "pad": "' + b"a" * (50 << 20) + b'"}'),
    }
    bundle = connect(server.url, timeout_s=1)
    server.script[MODELS] = scripts[case]
    start = time.perf_counter()
    with pytest.raises(InputError) as err:
        connect(server.url, timeout_s=1)
    seconds = time.perf_counter() - start
    assert err.value.input_name in ("timeout_s", "base_url") and seconds < 6, (str(err.value), seconds)
    print(f"\nBOUND /models {case}: gave up after {seconds:.2f} s")
    _works_again(server, bundle)


def test_flood_json_is_checked_not_trusted(server):
    """A stream event of valid JSON but 100 choices: only the first few are read."""
    server.script[CHAT] = _events({"choices": [{"delta": {"content": "a"}, "finish_reason": "stop"}] * 100},
                                  "data: [DONE]\n\n")
    assert _ask(connect(server.url)).text == "a"
