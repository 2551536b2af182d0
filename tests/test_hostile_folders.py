"""Hostile folders (issue 12, "never hang"): FIFOs, sockets and devices among images or given as --image are
skipped or refused without a blocking read; link loops and dangling links in an image folder (every sort order)
and in models/LLM never break a listing or make INPUT_TYPES raise. No model needed, except for the CLI case."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qwen3vl_pack.nodes.caption import Qwen3VLLoadImageFolder
from qwen3vl_pack.utils.image_files import SORT_ORDERS, list_image_files, read_rgb

from .node_calls import deadline

ROOT = Path(__file__).resolve().parents[1]


def _png(path: Path, size=(40, 30), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, format="PNG")
    return path


# --- never hang: special files --------------------------------------------------------------------------------

def _special_files(folder: Path) -> list[socket.socket]:
    os.mkfifo(folder / "fifo.png")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(folder / "sock.png"))
    (folder / "zero.png").symlink_to("/dev/zero")  # a device: reading never ends
    (folder / "dev.jpg").symlink_to("/dev/null")
    return [sock]


def test_fifo_socket_and_device_files_among_images_are_skipped(tmp_path):
    _png(tmp_path / "real.png")
    held = _special_files(tmp_path)
    try:
        with deadline(30):
            for order in SORT_ORDERS:
                files, _ = list_image_files(str(tmp_path), sort=order)
                assert [f.name for f in files] == ["real.png"]
            images, paths = Qwen3VLLoadImageFolder().load(str(tmp_path), False, ".png,.jpg", "natural", 0, 0, True)
            assert [Path(p).name for p in paths] == ["real.png"] and images[0].shape == (1, 30, 40, 3)
            for name in ("fifo.png", "sock.png", "zero.png", "dev.jpg"):
                with pytest.raises(ValueError, match="not a regular file"):
                    read_rgb(tmp_path / name)
    finally:
        for sock in held:
            sock.close()


def test_cli_refuses_a_fifo_as_image_without_blocking(tmp_path, dense_path):
    os.mkfifo(tmp_path / "pipe.png")
    run = subprocess.run([sys.executable, str(ROOT / "cli.py"), "ask", "--model", str(dense_path), "--image",
                          str(tmp_path / "pipe.png"), "hi"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert "--image: cannot read" in run.stderr and "FIFO" in run.stderr and "Traceback" not in run.stderr


# --- link loops and dangling links ----------------------------------------------------------------------------

def test_link_loops_and_dangling_links_in_an_image_folder(tmp_path):
    _png(tmp_path / "b.png")
    (tmp_path / "loop1.png").symlink_to("loop2.png")
    (tmp_path / "loop2.png").symlink_to("loop1.png")
    (tmp_path / "gone.png").symlink_to(tmp_path / "missing.png")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "up").symlink_to(tmp_path)  # a folder loop, for recursive listing
    for recursive in (False, True):
        for order in SORT_ORDERS:
            files, _ = list_image_files(str(tmp_path), recursive=recursive, sort=order)
            assert [f.name for f in files] == ["b.png"]
        args = dict(directory=str(tmp_path), recursive=recursive, extensions=".png", sort="modified", limit=0,
                    offset=0, skip_captioned=True)
        assert Qwen3VLLoadImageFolder.IS_CHANGED(**args) == Qwen3VLLoadImageFolder.IS_CHANGED(**args)
        assert [Path(p).name for p in Qwen3VLLoadImageFolder().load(**args)[1]] == ["b.png"]


def test_model_list_survives_link_loops_dangling_links_and_odd_entries(tmp_path, dense_path, monkeypatch):
    from qwen3vl_pack.nodes import comfy_services
    from qwen3vl_pack.nodes.loader import Qwen3VLModelLoader

    llm = tmp_path / "LLM"
    llm.mkdir()
    (llm / "good").symlink_to(dense_path)
    (llm / "loop1").symlink_to("loop2")
    (llm / "loop2").symlink_to("loop1")
    (llm / "dangling").symlink_to(tmp_path / "nowhere")
    (llm / "config_link").mkdir()
    (llm / "config_link" / "config.json").symlink_to(tmp_path / "nowhere.json")
    (llm / "config_fifo").mkdir()
    os.mkfifo(llm / "config_fifo" / "config.json")
    (tmp_path / "LLM2").symlink_to("LLM2")  # a search folder that is itself a loop
    monkeypatch.setattr(comfy_services, "llm_dirs", lambda: [str(tmp_path / "LLM2"), str(llm), str(tmp_path / "no")])
    with deadline(20):
        choices = Qwen3VLModelLoader.INPUT_TYPES()["required"]["model"][0]
    assert choices == ["good"]
