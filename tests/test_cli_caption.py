"""``python cli.py caption``, end to end in a subprocess on a temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from qwen3vl_pack.nodes.caption import Qwen3VLBatchCaption, Qwen3VLLoadImageFolder

ROOT = Path(__file__).resolve().parents[1]
SIZES = [(96, 64), (200, 150), (64, 64), (320, 240), (128, 300)]


def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "dataset"
    folder.mkdir()
    for i, (w, h) in enumerate(SIZES):
        arr = np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"img{i + 1}.png")
    (folder / "img3.txt").write_text("hand written caption\n", encoding="utf-8")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return folder


def test_cli_captions_a_folder_resumably_like_the_nodes(dense, dense_path, tmp_path):
    folder = _folder(tmp_path)
    args = ["caption", str(folder), "--model", str(dense_path), "--batch-size", "3", "--max-new-tokens", "8",
            "--prefix", "ohwx", "--attention", "sdpa"]
    out = _cli(*args)
    assert out.returncode == 0, out.stderr
    assert "captioned 4 image(s)" in out.stdout and "4 written" in out.stdout
    assert "1 already captioned" in out.stdout and "1 unreadable" in out.stdout and "broken.jpg" in out.stdout
    assert "5/5 [" in out.stderr and ("img/s" in out.stderr or "s/img" in out.stderr)  # tqdm bar on stderr
    assert (folder / "img3.txt").read_text(encoding="utf-8") == "hand written caption\n"
    written = {p.stem: p.read_text(encoding="utf-8") for p in folder.glob("*.txt") if p.stem != "img3"}
    assert sorted(written) == ["img1", "img2", "img4", "img5"]
    assert all(t.endswith("\n") and t.count("\n") == 1 and t.startswith("ohwx") for t in written.values())

    # the same captions as the nodes give for the same files
    images, paths = Qwen3VLLoadImageFolder().load(str(folder), False, "png", "natural", 0, 0, False)
    captions, _ = Qwen3VLBatchCaption().caption([dense], images, ["training"], [3], ["Greedy"], [8],
                                                ["ohwx"], [""])
    by_stem = {Path(p).stem: c + "\n" for p, c in zip(paths, captions, strict=True)}
    assert {k: by_stem[k] for k in written} == written

    # resumable: a second run captions nothing and touches nothing
    mtimes = {p: p.stat().st_mtime_ns for p in folder.glob("*.txt")}
    again = _cli(*args)
    assert again.returncode == 0, again.stderr
    assert "captioned 0 image(s)" in again.stdout and "5 already captioned" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in folder.glob("*.txt")} == mtimes
    (folder / "broken.jpg").unlink()
    done = _cli(*args)
    assert done.returncode == 0 and "nothing to do: all 5 image(s) already have a .txt caption" in done.stdout


def test_cli_output_dir_and_overwrite(dense_path, tmp_path):
    folder = _folder(tmp_path)
    out_dir = tmp_path / "captions"
    out = _cli("caption", str(folder), "--model", str(dense_path), "--max-new-tokens", "4", "--limit", "2",
               "--output-dir", str(out_dir), "--extension", "caption", "--policy", "overwrite", "--no-progress",
               "--style", "tags", "--extensions", "png")
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["img1.caption", "img2.caption"]
    assert "img/s" not in out.stderr and "s/img" not in out.stderr
    assert not list(folder.glob("img1.*t*"))  # nothing written beside the images


def test_cli_bad_input_exits_2_naming_it(dense_path, tmp_path):
    out = _cli("caption", str(tmp_path / "nope"), "--model", str(dense_path))
    assert out.returncode == 2 and "directory: folder" in out.stderr and "does not exist" in out.stderr
    (tmp_path / "empty").mkdir()
    out = _cli("caption", str(tmp_path / "empty"), "--model", str(dense_path))
    assert out.returncode == 2 and "has no image files" in out.stderr
    folder = _folder(tmp_path)
    out = _cli("caption", str(folder), "--model", str(dense_path), "--extension", "../x")
    assert out.returncode == 2 and "--extension:" in out.stderr and "not a file extension" in out.stderr
