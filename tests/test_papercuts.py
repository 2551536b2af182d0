"""Papercuts a new user met (issue 21): each one as the user saw it, through the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_ask_with_a_text_file_named_png_says_what_is_wrong(tmp_path):
    fake = tmp_path / "photo.png"
    fake.write_text("not an image at all\n", encoding="utf-8")
    out = _cli("ask", "Describe.", "--image", str(fake), "--model", str(tmp_path / "no-model"))
    assert out.returncode == 2
    assert "--image:" in out.stderr and "not an image in a format Pillow reads" in out.stderr
    assert "BufferedReader" not in out.stderr and "name=3" not in out.stderr


def test_caption_a_folder_with_only_an_unreadable_image_fails_before_loading_a_model(tmp_path):
    folder = tmp_path / "dataset"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n then nothing useful")
    out = _cli("caption", str(folder), "--model", str(tmp_path / "no-such-model"))  # a model is never looked at
    assert out.returncode == 2, out.stdout + out.stderr
    assert "directory: none of the 1 image file(s) to caption could be read (broken.png)" in out.stderr
    assert "--model" not in out.stderr and not list(folder.glob("*.txt"))
