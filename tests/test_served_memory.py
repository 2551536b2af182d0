"""Peak memory of the served client against a gzip bomb and a 200 MB SSE line, measured in a subprocess.

The hostile server runs in the test process; the client runs in a fresh Python whose peak resident memory is
read after the call, and must stay under 1 GiB (the pack's imports included). The peak is the process's own
``VmHWM`` (/proc/self/status): its ``ru_maxrss`` also counts the parent's peak before ``exec`` (subprocess uses
vfork), which in a long pytest run is the test runner's memory, not the client's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

from . import hostile_server as hs

ROOT = Path(__file__).resolve().parents[1]
GIB = 1 << 30

CLIENT = r"""
import json, resource, sys, time


def peak():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))


sys.path.insert(0, sys.argv[1])
from tests.conftest import _import_pack
_import_pack()
from qwen3vl_pack.loaders.backends.openai_client import OpenAIClient, Cancel
from qwen3vl_pack.utils.errors import InputError

client = OpenAIClient(sys.argv[2], timeout_s=30)
base = peak()
start = time.perf_counter()
try:
    if sys.argv[3] == "models":
        client.list_models()
    else:
        client.stream_chat({"model": "m", "messages": [], "max_tokens": 64}, lambda k, t: None, Cancel())
    error = ""
except InputError as err:
    error = str(err)
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"base": base, "peak": peak(), "ru_maxrss": maxrss, "seconds": time.perf_counter() - start,
                  "error": error}))
"""


@lru_cache(maxsize=1)
def _bomb() -> bytes:
    return hs.gzip_bomb(GIB)  # about 1 MiB that inflates to 1 GiB


def _measure(server: hs.HostileServer, what: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CLIENT, str(ROOT), server.url, what], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("what", ["gzip bomb on /models", "gzip bomb as the chat stream", "200 MB SSE line"])
def test_peak_memory_stays_under_1_gib(what):
    bomb = _bomb()
    assert len(bomb) < 2 << 20
    with hs.HostileServer() as server:
        if what == "gzip bomb on /models":
            server.script[("GET", "/v1/models")] = lambda h, b: hs.body(h, bomb, 200, {"Content-Encoding": "gzip"})
        elif what == "gzip bomb as the chat stream":
            server.script[("POST", "/v1/chat/completions")] = lambda h, b: hs.body(
                h, bomb, 200, {"Content-Encoding": "gzip", "Content-Type": "text/event-stream"})
        else:
            line = b"data: " + b"a" * (1 << 16)
            server.script[("POST", "/v1/chat/completions")] = lambda h, b: hs.stream(h, [line] * 3200, server.stop)
        result = _measure(server, "models" if "/models" in what else "chat")
    assert result["error"].startswith("base_url:") and ("KiB" in result["error"] or "MiB" in result["error"])
    assert result["peak"] < GIB, result
    print(f"\nMEMORY {what}: peak {result['peak'] / 2**20:.0f} MiB (after imports {result['base'] / 2**20:.0f} MiB), "
          f"gave up after {result['seconds']:.2f} s")
