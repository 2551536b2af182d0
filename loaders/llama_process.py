"""The llama-server processes this pack starts (Qwen3-VL GGUF node, ``cli.py --gguf``): one per settings.

Each server runs on 127.0.0.1 on a free port under a guard process (``llama_guard.py``) whose standard input
is a pipe from this process: when this process ends in any way, the guard stops the server. Servers are
reused like the model cache and stopped by :func:`stop` / :func:`stop_all` (Unload Models, ComfyUI's /free,
keep_loaded off after a run, and ``atexit``). Every start writes a log file that errors point to.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from ..utils.errors import InputError
from .cache import add_unload_hook

logger = logging.getLogger(__name__)
GUARD = Path(__file__).resolve().parent / "llama_guard.py"
LOG_TAIL_LINES = 15


@dataclass(frozen=True)
class LlamaSettings:
    """Everything that makes one server different from another (the registry key)."""

    binary: str
    model: str
    mmproj: str
    ctx_per_slot: int = 8192
    parallel: int = 1
    gpu_layers: int = 999
    extra_args: tuple[str, ...] = ()
    files_stamp: tuple = ()  # (size, mtime) of model and mmproj: a changed file gets a new server
    start_timeout_s: float = 300.0

    @property
    def alias(self) -> str:
        return Path(self.model).stem

    def command(self, port: int) -> list[str]:
        return [self.binary, "-m", self.model, "--mmproj", self.mmproj, "--host", "127.0.0.1", "--port", str(port),
                "-c", str(self.ctx_per_slot * self.parallel), "--parallel", str(self.parallel),
                "-ngl", str(self.gpu_layers), "--jinja", "--no-webui", "--alias", self.alias, *self.extra_args]


class ManagedServer:
    """One running llama-server (through its guard)."""

    def __init__(self, settings: LlamaSettings, port: int, log_file: Path):
        self.settings, self.port, self.log_file = settings, port, log_file
        self.url = f"http://127.0.0.1:{port}/v1"
        self.proc: subprocess.Popen | None = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        command = self.settings.command(self.port)
        with open(self.log_file, "w", encoding="utf-8") as log:
            log.write("$ " + " ".join(command) + "\n")
        # the guard's stdin is the lifeline; its own session, so a terminal's Ctrl-C goes through us
        self.proc = subprocess.Popen([sys.executable, str(GUARD), str(self.log_file), "--", *command],
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        logger.info("llama-server starting on 127.0.0.1:%d (pid %d, log %s)", self.port, self.proc.pid,
                    self.log_file)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.settings.start_timeout_s
        root = self.url[: -len("/v1")]
        with httpx.Client(timeout=5.0) as http:
            while True:
                if not self.alive():
                    code = self.proc.returncode if self.proc is not None else None
                    raise start_error(self.settings, self.log_file, f"llama-server stopped during start-up (exit "
                                      f"code {code})")
                try:
                    if http.get(root + "/health").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise InputError("start_timeout_s", f"llama-server was not ready after "
                                     f"{self.settings.start_timeout_s:g} s. Last lines of {self.log_file}:\n"
                                     f"{log_tail(self.log_file)}", "Raise start_timeout_s for a big model on a "
                                     "slow disk, or read the log.")
                time.sleep(0.2)

    def stop(self) -> None:
        """Close the guard's lifeline (it stops the server), then make sure both are gone."""
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(15)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
        except OSError as err:
            logger.debug("stopping llama-server: %s", err)
            _kill_group(proc)
        logger.info("llama-server on 127.0.0.1:%d stopped (log %s)", self.port, self.log_file)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, 9)
        else:
            proc.kill()
    except OSError:
        pass
    proc.wait()


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        return f"(cannot read the log: {err})"
    return "\n".join(text.rstrip().splitlines()[-lines:])


def start_error(settings: LlamaSettings, log_file: Path, what: str) -> InputError:
    """A failed start, blamed on the input the log points at, quoting the log's last lines."""
    text = log_tail(log_file, 400).lower()
    tail = log_tail(log_file)
    if "mmproj" in text and ("n_embd" in text or "mismatch" in text) or "failed to load multimodal" in text \
            or "clip_init" in text and "failed" in text:
        name, advice = "mmproj", "Choose the mmproj file made for this model (same repository and size)."
    elif "failed to load model" in text or "error loading model" in text:
        name, advice = "model", "Check that the GGUF is a complete Qwen3-VL / Qwen3.5 language model file."
    elif "couldn't bind" in text or "address already in use" in text:
        name, advice = "port", "Choose another port, or 0 for a free one."
    elif "cannot start" in text:
        name, advice = "llama_server", "Give the llama-server of a llama.cpp release built for this machine."
    else:
        name, advice = "llama_server", "Read the log; a llama-server too old for Qwen3-VL fails like this too."
    return InputError(name, f"{what}. Last lines of {log_file}:\n{tail}\n", advice)


def free_port() -> int:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    except OSError as err:
        raise InputError("port", f"no free port on 127.0.0.1 ({err}).", "Free a port, or give one.") from err


def check_port(port: int) -> int:
    if port == 0:
        return free_port()
    if not 1024 <= port <= 65535:
        raise InputError("port", f"must be 0 (a free port) or 1024-65535, got {port}.", "Use 0.")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as llama-server binds: TIME_WAIT is no conflict
        try:
            s.bind(("127.0.0.1", port))
        except OSError as err:
            raise InputError("port", f"127.0.0.1:{port} is taken ({err}).", "Use 0 for a free port, or stop "
                             "what listens there.") from err
    return port


def log_dir() -> Path:
    return Path(os.environ.get("QWEN3VL_LLAMA_LOG_DIR") or Path(tempfile.gettempdir()) / "qwen3vl-llama-server")


_SERVERS: dict[LlamaSettings, ManagedServer] = {}
_LOCK = threading.RLock()


def ensure(settings: LlamaSettings, port: int = 0, prefer: int = 0) -> ManagedServer:
    """The running server for ``settings``: reused if alive, else (re)started on ``port`` (0 = a free one; taken
    = an error), or on ``prefer`` / its old port when those are free."""
    with _LOCK:
        server = _SERVERS.get(settings)
        if server is not None and server.alive():
            return server
        if server is not None:
            logger.warning("llama-server on port %d had stopped (exit code %s); starting it again; log %s",
                           server.port, server.proc.returncode if server.proc else None, server.log_file)
            server.stop()
            prefer = prefer or server.port
        chosen = check_port(port) if port or not prefer else _reusable(prefer) or free_port()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        server = ManagedServer(settings, chosen, log_dir() / f"llama-server-{settings.alias}-{stamp}-{chosen}.log")
        _SERVERS[settings] = server
        try:
            server.start()
        except BaseException:
            _SERVERS.pop(settings, None)
            server.stop()
            raise
        return server


def _reusable(port: int) -> int:
    try:
        return check_port(port)
    except InputError:
        return 0


def running(settings: LlamaSettings) -> ManagedServer | None:
    with _LOCK:
        server = _SERVERS.get(settings)
        return server if server is not None and server.alive() else None


def stop(settings: LlamaSettings) -> bool:
    with _LOCK:
        server = _SERVERS.pop(settings, None)
    if server is None:
        return False
    server.stop()
    return True


def stop_all() -> int:
    """Stop every managed llama-server; returns how many were running."""
    with _LOCK:
        servers = list(_SERVERS.values())
        _SERVERS.clear()
    for server in servers:
        server.stop()
    return len(servers)


atexit.register(stop_all)
add_unload_hook(stop_all)
