"""Guard of one managed llama-server: ``python llama_guard.py LOG_FILE -- llama-server ARGS...``.

Run by :mod:`.llama_process` (never imported). It starts the server with its output in LOG_FILE and stops it
when its own standard input closes. That pipe's other end lives only in the process that started the guard
(ComfyUI or the CLI), so however that process ends (exit, crash, SIGKILL, a closed terminal) the operating
system closes the pipe and the server is stopped: no orphan llama-server, on every platform. SIGTERM/SIGINT
to the guard stop the server too. The guard exits with the server's exit code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

STOP_GRACE_S = 5.0


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write(__doc__ or "")
        return 2
    with open(argv[0], "ab", buffering=0) as log:
        try:
            proc = subprocess.Popen(argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        except OSError as err:  # not a program for this machine, no permission...
            log.write(f"cannot start {argv[2]}: {err}\n".encode())
            return 127

    fd = sys.stdin.fileno()

    def watch_stdin() -> None:
        try:  # os.read, not sys.stdin: a daemon thread inside a buffered read aborts the interpreter's exit
            while os.read(fd, 1024):
                pass
        except OSError:
            pass
        _stop(proc)

    def on_signal(signum, frame) -> None:  # no waiting in a signal handler: the main thread waits
        if proc.poll() is None:
            proc.terminate()
            killer = threading.Timer(STOP_GRACE_S, proc.kill)
            killer.daemon = True
            killer.start()

    for name in ("SIGTERM", "SIGINT", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), on_signal)
    threading.Thread(target=watch_stdin, daemon=True).start()
    return proc.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
