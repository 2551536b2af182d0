"""Captioning a folder through a server writes each caption as soon as its answer arrives (any order), keeps the
report in input order, and a re-run after a crash asks only for the missing ones (tests/hostile_server.py)."""

from __future__ import annotations

import base64
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qwen3vl_pack.loaders.backends.served import connect
from qwen3vl_pack.loaders.batch import caption_files, make_job
from qwen3vl_pack.utils.presets import resolve_options

from . import hostile_server as hs

ROOT = Path(__file__).resolve().parents[1]
CHAT = ("POST", "/v1/chat/completions")


pytestmark = pytest.mark.usefixtures("fast_served")  # quick retries, no remembered answers


def _folder(tmp_path: Path, n: int) -> list[Path]:
    folder = tmp_path / "images"
    folder.mkdir()
    files = []
    for i in range(n):  # heights 64, 96, 128...: the server tells the images apart by the size it receives
        arr = np.random.default_rng(i).integers(0, 256, (64 + 32 * i, 64, 3), dtype=np.uint8)
        files.append(folder / f"img{i:02d}.png")
        Image.fromarray(arr).save(files[-1])
    return files


def _image_index(body: dict) -> int:
    url = body["messages"][-1]["content"][0]["image_url"]["url"]
    png = base64.b64decode(url.split(",", 1)[1])
    height = struct.unpack(">I", png[20:24])[0]
    return (height - 64) // 32


class FirstIsSlow:
    """Image 0 is answered only after images 1..``hold``; with ``die`` the server "crashes" then instead, and the
    requests for the other images (held meanwhile) get no answer either."""

    def __init__(self, hold: int, die: bool, released: threading.Event | None = None):
        self.hold, self.die = hold, die
        self.answered: set[int] = set()
        self.lock = threading.Lock()
        self.released = released or threading.Event()
        self.release_when_answered = released is None
        self.dead = threading.Event()

    def __call__(self, h, body):
        index = _image_index(body)
        if self.dead.is_set() or (self.die and index > self.hold and self.dead.wait(20)):
            h.close_connection = True
            h.connection.shutdown(2)  # the crashed server answers nothing
            return
        if index == 0:
            self.released.wait(20)
            if self.die:
                self.dead.set()
                h.connection.shutdown(2)
                return
        hs.stream(h, hs.normal_events(2))
        with self.lock:
            self.answered.add(index)
            if self.release_when_answered and self.answered >= set(range(1, self.hold + 1)):
                self.released.set()


def test_captions_are_written_as_they_arrive_and_reported_in_input_order(tmp_path):
    files = _folder(tmp_path, 6)
    seen: list[tuple[int, bool]] = []
    written = threading.Event()  # image 0 is answered once 5 captions are on disk (never, if they wait for it)
    with hs.HostileServer() as server:
        server.script[CHAT] = FirstIsSlow(hold=5, die=False, released=written)
        bundle = connect(server.url, max_concurrency=6)

        def on_progress(_n):
            seen.append((sum(f.with_suffix(".txt").exists() for f in files), files[0].with_suffix(".txt").exists()))
            if seen[-1][0] >= 5:
                written.set()

        summary = caption_files(bundle, files, make_job("custom", resolve_options("Greedy", 8, 0), "caption", 1),
                                on_progress=on_progress)
    assert summary.report.written == [f.with_suffix(".txt") for f in files]  # the report keeps input order
    assert (5, False) in seen and seen[-1] == (6, True)  # 1-5 were on disk while image 0 was still running


def _cli(url: str, folder: Path):
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), "caption", str(folder), "--server", url,
                           "--concurrency", "4", "--max-new-tokens", "8", "--timeout", "5", "--no-progress"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_cli_loses_no_finished_caption_when_the_server_dies(tmp_path):
    """The server answers images 1-3, then dies while image 0 is still running: 1-3 are on disk, and the re-run
    asks only for the 9 missing ones."""
    files = _folder(tmp_path, 12)
    with hs.HostileServer() as server:
        script = FirstIsSlow(hold=3, die=True)
        server.script[CHAT] = script
        out = _cli(server.url, files[0].parent)
        assert out.returncode == 2, out.stderr
        written = sorted(f.name for f in files if f.with_suffix(".txt").exists())
        assert written == ["img01.png", "img02.png", "img03.png"], out.stderr
        server.script[CHAT] = lambda h, b: hs.stream(h, hs.normal_events(2))  # restarted
        before = sum(1 for _, path, _ in server.requests if path == CHAT[1])
        out = _cli(server.url, files[0].parent)
        asked = sum(1 for _, path, _ in server.requests if path == CHAT[1]) - before
    assert out.returncode == 0, out.stderr
    assert asked == 9 and all(f.with_suffix(".txt").exists() for f in files)
    assert "3 already captioned before this run" in out.stdout + out.stderr


def test_cut_off_captions_are_reported_in_input_order_too(tmp_path, monkeypatch):
    """Answers from a server arrive in any order; the report lists written and cut-off files alike in input order."""
    from qwen3vl_pack.loaders import batch

    files = _folder(tmp_path, 4)
    arrival = [3, 0, 2, 1]  # images 3 and 1 were still thinking at max_new_tokens

    def out_of_order(bundle, items, job, **kw):
        items = list(items)
        for i in arrival:
            yield [(items[i][0], batch.CutOffCaption() if i in (1, 3) else f"caption {i}")]

    monkeypatch.setattr(batch, "iter_captions", out_of_order)
    summary = caption_files(None, files, make_job("custom", resolve_options("Greedy", 8, 0), "caption", 1))
    assert [p.name for p in summary.report.written] == ["img00.txt", "img02.txt"]
    assert [p.name for p in summary.report.cut_off] == ["img01.txt", "img03.txt"]
