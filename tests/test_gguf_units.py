"""GGUF without llama-server running: the header reader, the file/binary checks of the GGUF node, the server
kinds' request rules, and a llama-server that dies at start (a stand-in program). The real server: test_llama_server.py."""

from __future__ import annotations

import os
import stat
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from qwen3vl_pack.loaders import gguf, llama_process
from qwen3vl_pack.loaders.backends.base import VisualBudget
from qwen3vl_pack.loaders.backends.openai_client import ServerError
from qwen3vl_pack.loaders.backends.server_kinds import LLAMA_CPP, VLLM, ServerKind
from qwen3vl_pack.nodes.gguf import Qwen3VLGGUFModel
from qwen3vl_pack.utils.errors import InputError
from qwen3vl_pack.utils.gguf_meta import GGUFError, read_metadata

ROOT = Path(__file__).resolve().parents[1]


def _kv(key: str, kind: int, value) -> bytes:
    out = struct.pack("<Q", len(key)) + key.encode() + struct.pack("<I", kind)
    if kind == 8:
        return out + struct.pack("<Q", len(value)) + value.encode()
    if kind == 9:  # array of uint32
        return out + struct.pack("<IQ", 4, len(value)) + b"".join(struct.pack("<I", v) for v in value)
    return out + struct.pack("<I", value)


def write_gguf(path: Path, arch: str, width: int) -> Path:
    kvs = [_kv("general.architecture", 8, arch), _kv("general.skipped", 9, [1, 2, 3])]
    kvs.append(_kv("clip.vision.projection_dim" if arch == "clip" else f"{arch}.embedding_length", 4, width))
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + b"".join(kvs))
    return path


@pytest.fixture
def files(tmp_path):
    return {"model": write_gguf(tmp_path / "model.gguf", "qwen3vl", 64),
            "mmproj": write_gguf(tmp_path / "mmproj-model.gguf", "clip", 64),
            "other": write_gguf(tmp_path / "mmproj-other.gguf", "clip", 128)}


def test_header_reader(files, tmp_path):
    meta = read_metadata(files["model"])
    assert meta["general.architecture"] == "qwen3vl" and meta["qwen3vl.embedding_length"] == 64
    assert meta["general.skipped"] is None and read_metadata(files["model"], keep_arrays=True)["general.skipped"] == [1, 2, 3]
    (tmp_path / "x.gguf").write_bytes(b"PK\x03\x04 not gguf")
    with pytest.raises(GGUFError, match="not a GGUF"):
        read_metadata(tmp_path / "x.gguf")
    (tmp_path / "cut.gguf").write_bytes(files["model"].read_bytes()[:30])
    with pytest.raises(GGUFError, match="truncated"):
        read_metadata(tmp_path / "cut.gguf")


def test_file_checks_name_the_input(files, tmp_path):
    assert gguf.check_files(str(files["model"]), str(files["mmproj"])) == (str(files["model"]), str(files["mmproj"]))
    cases = [(files["mmproj"], files["model"], "model", "vision projector"),
             (files["model"], files["model"], "mmproj", "language model, not a vision projector"),
             (files["model"], files["other"], "mmproj", "belongs to another model"),
             (tmp_path / "none.gguf", files["mmproj"], "model", "does not exist"),
             (files["model"], "", "mmproj", "is empty")]
    (tmp_path / "text.gguf").write_text("hello", encoding="utf-8")
    cases.append((tmp_path / "text.gguf", files["mmproj"], "model", "not a GGUF file"))
    for model, mmproj, name, words in cases:
        with pytest.raises(InputError) as err:
            gguf.check_files(str(model), str(mmproj))
        assert str(err.value).startswith(name + ":") and words in str(err.value)


def test_binary_lookup(tmp_path, monkeypatch):
    monkeypatch.delenv(gguf.BINARY_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(InputError) as err:
        gguf.find_binary("")
    assert str(err.value).startswith("llama_server:") and gguf.RELEASES in str(err.value)
    plain = tmp_path / "llama-server"
    plain.write_text("#!/bin/sh\n", encoding="utf-8")
    with pytest.raises(InputError, match="not executable"):
        gguf.find_binary(str(plain))
    plain.chmod(plain.stat().st_mode | stat.S_IXUSR)
    assert gguf.find_binary(str(tmp_path)) == str(plain.resolve())  # the release folder works too
    monkeypatch.setenv(gguf.BINARY_ENV, str(tmp_path / "gone"))
    with pytest.raises(InputError, match=f"from {gguf.BINARY_ENV}"):
        gguf.find_binary("")


def _fake_server(tmp_path: Path, body: str) -> str:
    path = tmp_path / "fake-llama-server"
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(0o755)
    return str(path)


def test_server_dying_at_start_quotes_its_log_and_leaves_nothing(files, tmp_path, monkeypatch):
    monkeypatch.setenv("QWEN3VL_LLAMA_LOG_DIR", str(tmp_path / "logs"))
    binary = _fake_server(tmp_path, 'echo "llama_model_load: error loading model: tensor \'x\' is broken"; exit 1')
    with pytest.raises(InputError) as err:
        gguf.start_gguf(str(files["model"]), str(files["mmproj"]), binary)
    text = str(err.value)
    assert text.startswith("model:") and "exit code 1" in text and "tensor 'x' is broken" in text
    assert str(tmp_path / "logs") in text
    assert llama_process._SERVERS == {}


def test_a_binary_that_cannot_run_names_llama_server(files, tmp_path, monkeypatch):
    monkeypatch.setenv("QWEN3VL_LLAMA_LOG_DIR", str(tmp_path / "logs"))
    binary = tmp_path / "llama-server"
    binary.write_bytes(b"\x00\x01 not a program")
    binary.chmod(0o755)
    with pytest.raises(InputError) as err:
        gguf.start_gguf(str(files["model"]), str(files["mmproj"]), str(binary))
    assert str(err.value).startswith("llama_server:") and "cannot start" in str(err.value)
    assert llama_process._SERVERS == {}


def test_port_taken_and_bad_numbers(files, tmp_path):
    import socket

    binary = _fake_server(tmp_path, "exit 1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(InputError, match="^port: .* is taken"):
            gguf.start_gguf(str(files["model"]), str(files["mmproj"]), binary, port=s.getsockname()[1])
    for kwargs, name in (({"ctx_per_slot": 100}, "context"), ({"parallel": 0}, "parallel")):
        with pytest.raises(InputError, match=f"^{name}:"):
            gguf.start_gguf(str(files["model"]), str(files["mmproj"]), binary, **kwargs)
    assert llama_process._SERVERS == {}


def test_node_uses_the_path_inputs_and_names_them(files, tmp_path):
    binary = _fake_server(tmp_path, "exit 1")
    node = Qwen3VLGGUFModel()
    with pytest.raises(InputError, match="^mmproj_path: .*belongs to another model"):
        node.start("x", "y", 4096, 1, 0, True, model_path=str(files["model"]), mmproj_path=str(files["other"]),
                   llama_server=binary)
    with pytest.raises(InputError, match="^model: 'x' is not in models/LLM"):
        node.start("x", "y", 4096, 1, 0, True, llama_server=binary)


def test_guard_stops_the_server_when_its_parent_dies(tmp_path):
    """The lifeline: a parent killed with SIGKILL (no atexit) still leaves no server behind."""
    pid_file = tmp_path / "child.pid"
    script = (f"import subprocess, sys, time\n"
              f"p = subprocess.Popen([sys.executable, {str(llama_process.GUARD)!r}, {str(tmp_path / 'log')!r}, '--',"
              f" 'sh', '-c', 'echo $$ > {pid_file}; exec sleep 300'], stdin=subprocess.PIPE)\n"
              f"time.sleep(300)\n")
    parent = subprocess.Popen([sys.executable, "-c", script])
    for _ in range(100):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        import time
        time.sleep(0.1)
    child = int(pid_file.read_text())
    os.kill(child, 0)  # running
    parent.kill()
    parent.wait()
    import time
    for _ in range(100):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        _reap(child)
        time.sleep(0.1)
    else:
        pytest.fail(f"server pid {child} still runs after its parent was killed")


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def test_llama_kind_adapts_requests():
    kind = ServerKind(LLAMA_CPP, slot_context=1024, slots=4, image_tokens=(8, 4096))
    payload = {"max_tokens": 100, "repetition_penalty": 1.1}
    kind.adapt(payload, 50, False)
    assert payload == {"max_tokens": 100, "repeat_penalty": 1.1}
    with pytest.raises(InputError, match="^video: llama-server takes no video"):
        kind.adapt({"max_tokens": 10}, 50, True)
    with pytest.raises(InputError) as err:
        kind.adapt({"max_tokens": 1000}, 50, False)
    assert str(err.value).startswith("max_new_tokens:") and "1024" in str(err.value) and "4 --parallel" in str(err.value)
    with pytest.raises(InputError, match="^max_visual_tokens:"):
        kind.adapt({"max_tokens": 10}, 1020, False)
    assert kind.pixel_bounds(VisualBudget(0, 4)) == (4 * 1024, 4 * 1024)  # the budget wins inside the bounds
    assert kind.pixel_bounds(VisualBudget(0, 1280)) == (8 * 1024, 1280 * 1024)  # llama.cpp's floor of 8 tokens
    vllm = ServerKind(VLLM)
    payload = {"max_tokens": 100000, "repetition_penalty": 1.1}
    vllm.adapt(payload, 50, True)
    assert payload == {"max_tokens": 100000, "repetition_penalty": 1.1}
    assert vllm.pixel_bounds(VisualBudget(0, 1280)) == (None, 1280 * 1024)


def test_llama_kind_explains_errors():
    err = ServerError("max_new_tokens", "server said: request (5000 tokens) exceeds the available context size "
                      "(1024 tokens), try increasing it", "")
    managed = ServerKind(LLAMA_CPP, slot_context=1024, slots=4, log_file="/tmp/x.log", context_input="context")
    told = managed.explain(err)
    assert str(told).startswith("context:") and "4 --parallel slots" in str(told) and "/tmp/x.log" in str(told)
    assert ServerKind(VLLM).explain(err) is err
    plain = ServerKind(LLAMA_CPP, slot_context=1024).explain(err)
    assert str(plain).startswith("max_visual_tokens:") and "-c" in str(plain)


def test_cli_flags_for_gguf(files, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PATH": str(tmp_path)}
    env.pop(gguf.BINARY_ENV, None)
    run = subprocess.run([sys.executable, str(ROOT / "cli.py"), "ask", "--gguf", str(files["model"]), "--mmproj",
                          str(files["other"]), "--llama-server", _fake_server(tmp_path, "exit 1"), "Describe."],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 2 and "--mmproj: " in run.stderr and "belongs to another model" in run.stderr
    run = subprocess.run([sys.executable, str(ROOT / "cli.py"), "ask", "--gguf", str(files["model"]), "--mmproj",
                          str(files["mmproj"]), "Describe."], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 2 and "--llama-server: no llama-server found" in run.stderr


@pytest.mark.parametrize("routes, kind", [
    ({"/props": {"default_generation_settings": {"n_ctx": 2048}, "total_slots": 2, "modalities": {"vision": True}}},
     LLAMA_CPP),
    ({"/version": {"version": "0.32.0"}}, VLLM),
    ({}, "openai"),
])
def test_server_detection(routes, kind):
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from qwen3vl_pack.loaders.backends.openai_client import OpenAIClient
    from qwen3vl_pack.loaders.backends.server_kinds import detect

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = routes.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(body or {"error": "not found"}).encode())

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    client = OpenAIClient(f"http://127.0.0.1:{httpd.server_address[1]}/v1", timeout_s=10)
    try:
        found = detect(client)
    finally:
        client.close()
        httpd.shutdown()
    assert found.name == kind
    if kind == LLAMA_CPP:
        assert (found.slot_context, found.slots, found.vision, found.image_tokens) == (2048, 2, True, (8, 4096))
