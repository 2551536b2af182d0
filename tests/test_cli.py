"""The command line, end to end in a subprocess (same engine as the nodes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "assets" / "sample.png"


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True,
                          timeout=timeout, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})


def test_cli_ask_with_model_and_images(dense_path):
    out = _cli("ask", "--model", str(dense_path), "--image", str(SAMPLE), "--image", str(SAMPLE),
               "--preset", "Greedy", "--max-new-tokens", "8", "--info", "Describe these images.")
    assert out.returncode == 0, out.stderr
    assert "visual tokens per image: 80, 80" in out.stdout
    assert out.stdout.count("<|image_pad|>×80") == 2
    assert "RANDOM weights" not in out.stderr


def test_cli_without_model_uses_tiny_and_says_so():
    out = _cli("ask", "--image", str(SAMPLE), "--max-new-tokens", "4", "Describe this image.")
    assert out.returncode == 0, out.stderr
    assert "RANDOM weights" in out.stderr and "random text" in out.stderr


def test_cli_bad_input_exits_2_with_message(tmp_path):
    out = _cli("ask", "--model", str(tmp_path / "nope"), "hi")
    assert out.returncode == 2
    assert "--model: folder" in out.stderr and "does not exist" in out.stderr
    out = _cli("ask", "--image", str(tmp_path / "missing.png"), "hi")
    assert out.returncode == 2 and "--image: cannot read" in out.stderr
