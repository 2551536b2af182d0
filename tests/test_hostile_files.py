"""Hostile and careless files (issue 12, "data first" and "never hang"): caption files never replace images,
writes are atomic and keep modes, links never lead out, every target is checked first, one line per caption.
No model needed. Special files and link loops: tests/test_hostile_folders.py."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qwen3vl_pack.nodes.caption import Qwen3VLLoadImageFolder, Qwen3VLSaveCaptions
from qwen3vl_pack.utils import safe_files
from qwen3vl_pack.utils.captions import plan_targets, save_captions, write_caption
from qwen3vl_pack.utils.errors import InputError
from qwen3vl_pack.utils.image_files import list_image_files

from .node_calls import deadline

ROOT = Path(__file__).resolve().parents[1]


def _png(path: Path, size=(40, 30), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, format="PNG")
    return path


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- a caption file is never an image -------------------------------------------------------------------------

@pytest.mark.parametrize("extension", [".png", "png", ".JPG", ".jpeg", ".webp", ".txt.png", ".mp4", ".safetensors"])
@pytest.mark.parametrize("policy", ["overwrite", "append", "skip"])
def test_image_extensions_are_refused_as_caption_extensions(tmp_path, extension, policy):
    photo, neighbour = _png(tmp_path / "photo.png"), _png(tmp_path / "photo.jpg", seed=1)
    before = {p.name: p.read_bytes() for p in (photo, neighbour)}
    with pytest.raises(InputError) as err:
        save_captions(["a caption"], [str(photo)], policy, "", extension)
    assert err.value.input_name == "extension" and "image" in str(err.value)
    assert {p.name: p.read_bytes() for p in (photo, neighbour)} == before
    assert _names(tmp_path) == ["photo.jpg", "photo.png"]


def test_load_image_folder_never_counts_an_image_as_a_caption(tmp_path):
    _png(tmp_path / "a.jpg")
    _png(tmp_path / "a.png", seed=1)  # a.png is an image, not the caption of a.jpg
    for ext in (".png", "png", ".JPG"):
        with pytest.raises(InputError) as err:
            list_image_files(str(tmp_path), skip_captioned=True, caption_extension=ext)
        assert err.value.input_name == "caption_extension"
    (tmp_path / "a.txt").write_text("caption")
    with pytest.raises(InputError, match="also in extensions") as err:  # .txt files loaded as images
        list_image_files(str(tmp_path), extensions="png, jpg, txt", skip_captioned=True, caption_extension=".txt")
    assert err.value.input_name == "caption_extension"
    bad = Qwen3VLLoadImageFolder.IS_CHANGED(str(tmp_path), caption_extension=".png")
    assert bad != bad  # NaN: the node runs and reports the error


def test_existing_target_holding_an_image_or_being_an_input_image_is_refused(tmp_path):
    image = _png(tmp_path / "a.png")
    _png(tmp_path / "a.caption", seed=3)  # a PNG file under the caption name
    before = (tmp_path / "a.caption").read_bytes()
    for policy in ("overwrite", "append"):
        with pytest.raises(InputError, match="holds an image"):
            save_captions(["text"], [str(image)], policy, "", ".caption")
    assert (tmp_path / "a.caption").read_bytes() == before
    text_image = tmp_path / "b.txt"  # an image that has the caption extension itself
    text_image.write_bytes((tmp_path / "a.png").read_bytes())
    with pytest.raises(InputError, match="is one of the images"):
        save_captions(["text"], [str(text_image)], "overwrite", "", ".txt")
    assert text_image.read_bytes() == (tmp_path / "a.png").read_bytes()


# --- atomic writes --------------------------------------------------------------------------------------------

_RLIMIT_CHILD = textwrap.dedent("""
    import json, resource, sys
    sys.path.insert(0, {tests!r})
    import conftest  # imports the pack as qwen3vl_pack
    from qwen3vl_pack.utils.captions import save_captions
    from qwen3vl_pack.utils.errors import InputError
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))  # no file may grow past 1000 bytes
    out = {{}}
    for name, policy in (("old", "overwrite"), ("old", "append"), ("new", "skip")):
        try:
            save_captions(["x" * 5000], [{folder!r} + "/" + name + ".png"], policy)
            out[policy] = "no error"
        except InputError as err:
            out[policy] = [err.input_name, str(err)]
    print(json.dumps(out))
""")


def test_rlimit_fsize_leaves_old_files_intact_and_no_partial_file(tmp_path):
    """The file-size limit (RLIMIT_FSIZE, set in a subprocess) stops every write mid-file: the old caption is as
    it was, no partial, empty or temp file is left, the error names the file and the fix, a re-run writes it."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "old.txt").write_text("hand written\n", encoding="utf-8")
    code = _RLIMIT_CHILD.format(tests=str(ROOT / "tests"), folder=str(folder))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    for policy in ("overwrite", "append", "skip"):
        name, message = result[policy]
        assert name == "paths" and "File too large" in message, message
        assert "ulimit" in message and "run again" in message
        assert ("old.txt" if policy != "skip" else "new.txt") in message
    assert (folder / "old.txt").read_text(encoding="utf-8") == "hand written\n"
    assert _names(folder) == ["old.txt"]  # no new.txt (partial or 0-byte), no temp file
    report = save_captions(["x" * 5000], [str(folder / "new.png")], "skip")  # the re-run writes what is missing
    assert [p.name for p in report.written] == ["new.txt"] and (folder / "new.txt").read_text() == "x" * 5000 + "\n"


def _fail_nth(monkeypatch, step: str, code: int, nth: int = 2) -> None:
    """Make the ``nth`` temp-file creation, file fsync or rename of the caption writer fail with ``code``."""
    name = {"create": "open", "fsync": "fsync", "rename": "replace"}[step]
    real, calls = getattr(os, name), {"n": 0}

    def relevant(args) -> bool:
        if step == "create":
            return os.path.basename(str(args[0])).startswith(safe_files.TEMP_PREFIX)
        if step == "fsync":
            return stat.S_ISREG(os.fstat(args[0]).st_mode)
        return True

    def wrapper(*args, **kwargs):
        if relevant(args):
            calls["n"] += 1
            if calls["n"] == nth:
                raise OSError(code, os.strerror(code))
        return real(*args, **kwargs)

    monkeypatch.setattr(os, name, wrapper)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EFBIG, errno.EACCES, errno.EROFS, errno.EDQUOT])
@pytest.mark.parametrize("step", ["create", "fsync", "rename"])
def test_failed_write_keeps_the_old_file_and_a_rerun_writes_what_is_missing(tmp_path, monkeypatch, code, step):
    """Disk full, quota, file-size limit, permission or read-only filesystem while writing the 2nd of 3 captions
    (simulated at each step of the write): the old file is intact, nothing partial is left, the error names the
    file and the fix, and a re-run writes what is missing."""
    folder = tmp_path / "set"
    folder.mkdir()
    images = [str(_png(folder / f"{n}.png", seed=i)) for i, n in enumerate("abc")]
    (folder / "b.txt").write_text("old b\n")
    _fail_nth(monkeypatch, step, code)
    with pytest.raises(InputError) as err:
        save_captions(["A", "B", "C"], images, "overwrite")
    monkeypatch.undo()
    message = str(err.value)
    assert err.value.input_name == "paths" and "b.txt" in message and "run again" in message
    assert os.strerror(code) in message
    assert (folder / "a.txt").read_text() == "A\n"  # finished before the failure
    assert (folder / "b.txt").read_text() == "old b\n"  # the old file is intact
    assert not (folder / "c.txt").exists()
    assert not [n for n in _names(folder) if n.startswith(".")]  # no temp file left
    report = save_captions(["A", "B", "C"], images, "skip")  # a re-run writes only what is missing
    assert [p.name for p in report.written] == ["c.txt"] and (folder / "c.txt").read_text() == "C\n"


def test_zero_byte_caption_left_by_a_crash_counts_as_missing(tmp_path):
    image = _png(tmp_path / "a.png")
    (tmp_path / "a.txt").write_bytes(b"")
    files, done = list_image_files(str(tmp_path), skip_captioned=True)
    assert [f.name for f in files] == ["a.png"] and done == 0
    report = save_captions(["fresh"], [str(image)], "skip")
    assert report.written and (tmp_path / "a.txt").read_text() == "fresh\n"


# --- links and file modes -------------------------------------------------------------------------------------

@pytest.mark.parametrize("policy", ["overwrite", "append"])
def test_link_out_of_the_folder_is_refused_before_writing(tmp_path, policy):
    (tmp_path / "secret.txt").write_text("keep\n")
    folder = tmp_path / "set"
    folder.mkdir()
    image = _png(folder / "a.png")
    (folder / "a.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(InputError, match="outside"):
        save_captions(["pwned"], [str(image)], policy)
    assert (tmp_path / "secret.txt").read_text() == "keep\n"


@pytest.mark.parametrize("policy", ["overwrite", "append", "skip"])
def test_link_swapped_in_after_the_checks_is_never_followed(tmp_path, policy):
    (tmp_path / "secret.txt").write_text("keep\n")
    folder = tmp_path / "set"
    folder.mkdir()
    image = _png(folder / "a.png")
    (folder / "a.txt").write_text("old\n")
    [target] = plan_targets([str(image)], "", ".txt", policy)  # all checks pass here
    (folder / "a.txt").unlink()
    (folder / "a.txt").symlink_to(tmp_path / "secret.txt")  # ... then the file becomes a link out
    if policy == "skip":
        assert write_caption(target, "pwned", policy) == "skipped"
    else:
        with pytest.raises(InputError, match="symbolic link"):
            write_caption(target, "pwned", policy)
    assert (tmp_path / "secret.txt").read_text() == "keep\n"
    assert (folder / "a.txt").is_symlink()


def test_link_swapped_in_between_read_and_rename_is_replaced_not_followed(tmp_path, monkeypatch):
    (tmp_path / "secret.txt").write_text("keep\n")
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "a.txt").write_text("old\n")
    real_read = safe_files.read_no_follow

    def read_then_swap(*args, **kwargs):
        result = real_read(*args, **kwargs)
        (folder / "a.txt").unlink()
        (folder / "a.txt").symlink_to(tmp_path / "secret.txt")
        return result

    monkeypatch.setattr("qwen3vl_pack.utils.captions.read_no_follow", read_then_swap)
    assert write_caption(folder / "a.txt", "new", "append") == "appended"
    assert (tmp_path / "secret.txt").read_text() == "keep\n"  # the rename replaced the link itself
    assert not (folder / "a.txt").is_symlink() and (folder / "a.txt").read_text() == "old\nnew\n"


def test_link_to_a_file_inside_the_folder_writes_that_file(tmp_path):
    (tmp_path / "real.txt").write_text("first\n")
    (tmp_path / "a.txt").symlink_to("real.txt")
    assert write_caption(tmp_path / "a.txt", "second", "append") == "appended"
    assert (tmp_path / "a.txt").is_symlink() and (tmp_path / "real.txt").read_text() == "first\nsecond\n"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o664, 0o600])
@pytest.mark.parametrize("policy", ["overwrite", "append"])
def test_file_modes_are_kept(tmp_path, mode, policy):
    target = tmp_path / "a.txt"
    target.write_text("old\n")
    target.chmod(mode)
    write_caption(target, "new", policy)
    assert stat.S_IMODE(target.stat().st_mode) == mode


def test_new_caption_files_get_the_usual_mode(tmp_path):
    old = os.umask(0o022)
    try:
        write_caption(tmp_path / "n.txt", "new", "skip")
        write_caption(tmp_path / "o.txt", "new", "overwrite")
    finally:
        os.umask(old)
    assert [stat.S_IMODE((tmp_path / n).stat().st_mode) for n in ("n.txt", "o.txt")] == [0o644, 0o644]


# --- Save Captions checks every target first, writes exactly one line -----------------------------------------

def _hazard(folder: Path, kind: str) -> str:
    """Make the third image's caption target unusable; returns that image's path."""
    if kind == "name_too_long":
        return str(folder / ("c" * 300 + ".png"))
    target = folder / "c.txt"
    if kind == "folder":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "read_only":
        target.write_text("hand written\n")
        target.chmod(0o444)
    elif kind == "image":
        _png(target)
    elif kind == "link_outside":
        target.symlink_to(folder.parent / "elsewhere.txt")
    return str(folder / "c.png")


@pytest.mark.parametrize("kind", ["name_too_long", "folder", "fifo", "read_only", "image", "link_outside"])
@pytest.mark.parametrize("policy", ["append", "overwrite"])
def test_save_captions_checks_every_target_before_writing_the_first(tmp_path, kind, policy):
    folder = tmp_path / "set"
    folder.mkdir()
    paths = [str(folder / "a.png"), str(folder / "b.png"), _hazard(folder, kind)]
    before = _names(folder)
    with deadline(20), pytest.raises(InputError) as err:
        Qwen3VLSaveCaptions().save(["A", "B", "C"], paths, [policy], [".txt"])
    assert err.value.input_name == "paths" and len(err.value.advice) > 10
    assert _names(folder) == before  # a.txt and b.txt were not written


def test_save_captions_writes_exactly_one_line(tmp_path):
    paths = [str(tmp_path / f"{n}.png") for n in "abcd"]
    captions = ["line one\nline two", "crlf\r\nend", "para\u2028sep\u2029x\x0by\x0cz\x85w", "  tabs\t\tand  spaces "]
    save_captions(captions, paths, "skip")
    texts = [(tmp_path / f"{n}.txt").read_bytes().decode() for n in "abcd"]
    assert texts == ["line one line two\n", "crlf end\n", "para sep x y z w\n", "tabs and spaces\n"]
    assert all(t.count("\n") == 1 and len(t.splitlines()) == 1 for t in texts)


@pytest.mark.parametrize("bad", [None, 3, ["a"], b"bytes"])
def test_save_captions_refuses_captions_that_are_not_text(tmp_path, bad):
    with pytest.raises(InputError) as err:
        save_captions(["fine", bad], [str(tmp_path / "a.png"), str(tmp_path / "b.png")], "skip")
    assert err.value.input_name == "captions"
    assert _names(tmp_path) == []  # nothing written, not even the first


def test_report_states_the_policy_used(tmp_path):
    paths = [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    for policy in ("skip", "overwrite", "append"):
        report = Qwen3VLSaveCaptions().save(["words", " \n "], paths, [policy], [".txt"])["result"][0]
        assert report.splitlines()[0].endswith(f"policy: {policy}")
    assert (tmp_path / "a.txt").read_text() == "words\nwords\n"
    assert (tmp_path / "b.txt").read_text() == "\n\n"  # an empty caption is still exactly one (empty) line


def test_cli_caption_refuses_an_image_extension_before_loading_anything(tmp_path):
    photo = _png(tmp_path / "photo.png")
    before = photo.read_bytes()
    run = subprocess.run([sys.executable, str(ROOT / "cli.py"), "caption", str(tmp_path), "--model",
                          str(tmp_path / "no-model-needed"), "--extension", ".png", "--policy", "overwrite"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "--extension: '.png' is an image" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and photo.read_bytes() == before and _names(tmp_path) == ["photo.png"]
