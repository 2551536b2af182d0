"""Folder listing, image reading and caption files (pure utils/ and the two file nodes; no model)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from qwen3vl_pack.nodes.caption import Qwen3VLLoadImageFolder, Qwen3VLSaveCaptions
from qwen3vl_pack.utils.captions import (
    build_caption_prompt,
    caption_target,
    check_extension,
    finish_caption,
    save_captions,
    write_caption,
)
from qwen3vl_pack.utils.errors import InputError
from qwen3vl_pack.utils.image_files import list_image_files, parse_extensions, read_rgb


def _png(path: Path, size=(40, 30), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def _folder(tmp_path: Path, names) -> Path:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, name in enumerate(names):
        _png(folder / name, (32 + 8 * i, 24 + 4 * i), i)
    return folder


# --- listing -------------------------------------------------------------------------------------------------

def test_natural_sort_offset_limit_and_extensions(tmp_path):
    folder = _folder(tmp_path, ["img10.png", "img2.PNG", "img1.jpg", ".hidden.png"])
    (folder / "notes.md").write_text("x")
    files, done = list_image_files(str(folder))
    assert [p.name for p in files] == ["img1.jpg", "img2.PNG", "img10.png"] and done == 0
    assert [p.name for p in list_image_files(str(folder), sort="name")[0]] == ["img1.jpg", "img10.png", "img2.PNG"]
    assert [p.name for p in list_image_files(str(folder), offset=1, limit=1)[0]] == ["img2.PNG"]
    assert [p.name for p in list_image_files(str(folder), extensions="png")[0]] == ["img2.PNG", "img10.png"]
    assert parse_extensions("png, .JPG;webp") == (".png", ".jpg", ".webp")


def test_recursive_skips_hidden_folders(tmp_path):
    folder = _folder(tmp_path, ["a.png"])
    (folder / "sub").mkdir()
    (folder / ".cache").mkdir()
    _png(folder / "sub" / "b.png")
    _png(folder / ".cache" / "c.png")
    assert [p.name for p in list_image_files(str(folder))[0]] == ["a.png"]
    assert [p.name for p in list_image_files(str(folder), recursive=True)[0]] == ["a.png", "b.png"]


def test_skip_captioned_beside_and_in_caption_dir(tmp_path):
    folder = _folder(tmp_path, ["a.png", "b.png", "c.png"])
    (folder / "b.txt").write_text("hand written")
    files, done = list_image_files(str(folder), skip_captioned=True)
    assert [p.name for p in files] == ["a.png", "c.png"] and done == 1
    out = tmp_path / "caps"
    out.mkdir()
    (out / "a.caption").write_text("x")
    files, done = list_image_files(str(folder), skip_captioned=True, caption_dir=str(out), caption_extension=".caption")
    assert [p.name for p in files] == ["b.png", "c.png"] and done == 1


@pytest.mark.parametrize("make, problem", [
    (lambda t: str(t / "missing"), "does not exist"),
    (lambda t: "", "is empty"),
    (lambda t: str(_png(t / "file.png")), "is a file"),
    (lambda t: str((t / "empty").mkdir() or t / "empty"), "has no image files"),
])
def test_bad_directory_names_the_input(tmp_path, make, problem):
    with pytest.raises(InputError) as err:
        list_image_files(make(tmp_path))
    assert err.value.input_name == "directory" and problem in str(err.value)


# --- reading -------------------------------------------------------------------------------------------------

def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(arr).save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    im = read_rgb(tmp_path / "r.jpg")
    assert im.size == (20, 40) and im.mode == "RGB"
    top, bottom = np.asarray(im)[:10].mean(), np.asarray(im)[-10:].mean()
    assert top > 200 and bottom < 50  # the white half is now on top


def test_modes_become_rgb(tmp_path):
    Image.new("CMYK", (8, 6), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=100)
    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :4, 3] = 255  # left half opaque red, right half fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    pal = Image.new("P", (8, 6), 1)
    pal.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    pal.save(tmp_path / "pal.png")
    grey16 = np.full((6, 8), 257 * 100, np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g16.png")

    cmyk = np.asarray(read_rgb(tmp_path / "cmyk.jpg")).astype(int)
    assert cmyk[..., 0].mean() > 200 and cmyk[..., 1:].mean() < 60  # red
    out = np.asarray(read_rgb(tmp_path / "rgba.png"))
    assert out.shape == (6, 8, 3) and (out[:, :4] == [255, 0, 0]).all() and (out[:, 4:] == 255).all()
    assert (np.asarray(read_rgb(tmp_path / "pal.png")) == [0, 0, 255]).all()
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    assert (np.asarray(read_rgb(tmp_path / "g16.png")) == 100).all()


def test_load_folder_node_lists_each_image_at_its_size_and_skips_unreadable(tmp_path, caplog):
    folder = _folder(tmp_path, ["a.png", "b.png", "c.png"])
    (folder / "broken.png").write_bytes(b"not an image")
    (folder / "cut.jpg").write_bytes(_jpeg_bytes()[:200])  # truncated
    images, paths = Qwen3VLLoadImageFolder().load(str(folder), False, ".png, .jpg", "natural", 0, 0, False)
    assert [Path(p).name for p in paths] == ["a.png", "b.png", "c.png"]
    assert all(os.path.isabs(p) for p in paths)
    assert [tuple(t.shape) for t in images] == [(1, 24, 32, 3), (1, 28, 40, 3), (1, 32, 48, 3)]
    assert all(t.dtype == torch.float32 and 0 <= float(t.min()) and float(t.max()) <= 1 for t in images)
    assert torch.equal(images[0][0], torch.from_numpy(np.asarray(Image.open(folder / "a.png"), np.float32) / 255))
    assert "2 of 5 file(s) unreadable" in caplog.text and "broken.png" in caplog.text and "cut.jpg" in caplog.text


def test_load_folder_max_megapixels_and_all_captioned(tmp_path):
    folder = _folder(tmp_path, ["a.png"])
    _png(folder / "big.png", (400, 300))
    images, _ = Qwen3VLLoadImageFolder().load(str(folder), False, "png", "natural", 0, 0, False, 0.03)
    assert images[1].shape[1] * images[1].shape[2] <= 30_000 and images[0].shape == (1, 24, 32, 3)
    for name in ("a", "big"):
        (folder / f"{name}.txt").write_text("done")
    assert Qwen3VLLoadImageFolder().load(str(folder), False, "png", "natural", 0, 0, True) == ([], [])


def test_is_changed_follows_the_folder(tmp_path):
    folder = _folder(tmp_path, ["a.png", "b.png"])
    args = dict(directory=str(folder), recursive=False, extensions="png", sort="natural", limit=0, offset=0,
                skip_captioned=True)
    first = Qwen3VLLoadImageFolder.IS_CHANGED(**args)
    assert Qwen3VLLoadImageFolder.IS_CHANGED(**args) == first
    (folder / "a.txt").write_text("caption")
    assert Qwen3VLLoadImageFolder.IS_CHANGED(**args) != first
    bad = Qwen3VLLoadImageFolder.IS_CHANGED(**{**args, "directory": str(tmp_path / "nope")})
    assert bad != bad  # NaN: always run, so the node reports the problem


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


# --- caption text --------------------------------------------------------------------------------------------

def test_prompts_and_caption_cleaning():
    assert build_caption_prompt("short") != build_caption_prompt("detailed")
    assert build_caption_prompt("tags", "Include the colours.").endswith("Include the colours.")
    assert build_caption_prompt("custom", "  Say hi. ") == "Say hi."
    with pytest.raises(InputError) as err:
        build_caption_prompt("custom", "")
    assert err.value.input_name == "custom_prompt"
    with pytest.raises(InputError) as err:
        build_caption_prompt("poem")
    assert err.value.input_name == "style"
    assert finish_caption(" a dog\n\n on  grass ", "training", "ohwx dog,", "") == "ohwx dog, a dog on grass"
    assert finish_caption("dog, Dog,\n grass , *sky*.", "tags", "", "best") == "dog, grass, sky, best"
    assert finish_caption("", "short", "", "") == ""


# --- caption files -------------------------------------------------------------------------------------------

def test_policies_and_hand_written_captions_are_kept(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("my own caption", encoding="utf-8")
    assert write_caption(target, "model caption") == "skipped"  # default policy
    assert target.read_text(encoding="utf-8") == "my own caption"
    assert write_caption(target, "second", "append") == "appended"
    assert target.read_text(encoding="utf-8") == "my own caption\nsecond\n"
    assert write_caption(target, "third", "overwrite") == "written"
    assert target.read_text(encoding="utf-8") == "third\n"
    fresh = tmp_path / "b.txt"
    assert write_caption(fresh, "café, 日本") == "written"
    assert fresh.read_bytes() == "café, 日本\n".encode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]  # no temp files left


def test_save_node_writes_beside_images_and_reports(tmp_path):
    folder = _folder(tmp_path, ["a.png", "b.png", "c.jpg"])
    (folder / "b.txt").write_text("hand written\n", encoding="utf-8")
    paths = [str(folder / n) for n in ("a.png", "b.png", "c.jpg")]
    out = Qwen3VLSaveCaptions().save(["cap a", "cap b", "cap c"], paths, ["skip"], [".txt"])
    report = out["result"][0]
    assert out["ui"] == {"text": [report]}
    assert report.startswith("3 caption(s): 2 written, 0 appended, 1 skipped")
    assert (folder / "a.txt").read_text() == "cap a\n" and (folder / "c.txt").read_text() == "cap c\n"
    assert (folder / "b.txt").read_text() == "hand written\n"
    out = Qwen3VLSaveCaptions().save(["A", "B", "C"], paths, ["overwrite"], [".txt"])
    assert [(folder / f"{n}.txt").read_text() for n in "abc"] == ["A\n", "B\n", "C\n"]
    Qwen3VLSaveCaptions().save(["x", "y", "z"], paths, ["append"], ["caption"], [str(tmp_path / "new" / "dir")])
    assert sorted(p.name for p in (tmp_path / "new" / "dir").iterdir()) == ["a.caption", "b.caption", "c.caption"]


@pytest.mark.parametrize("kwargs, name, problem", [
    (dict(captions=["a", "b"]), "paths", "1 path(s) for 2 caption(s)"),
    (dict(extension="../x"), "extension", "is not a file extension"),
    (dict(extension="/etc/passwd"), "extension", "is not a file extension"),
    (dict(policy="replace"), "policy", "unknown policy"),
    (dict(output_dir="FILE"), "output_dir", "is a file"),
    (dict(output_dir="FILE/sub"), "output_dir", "cannot write"),
])
def test_bad_save_inputs_are_refused_before_writing(tmp_path, kwargs, name, problem):
    image = _png(tmp_path / "a.png")
    (tmp_path / "FILE").write_text("x")
    args = dict(captions=["a"], paths=[str(image)], policy="skip", output_dir="", extension=".txt")
    args.update(kwargs)
    if args["output_dir"]:
        args["output_dir"] = str(tmp_path / args["output_dir"])
    with pytest.raises(InputError) as err:
        save_captions(**args)
    assert err.value.input_name == name and problem in str(err.value)
    assert not (tmp_path / "a.txt").exists()


def test_names_that_escape_the_folder_are_refused(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    for name in ("../x", "..", "sub/x.txt", "/abs.txt", ""):
        with pytest.raises(InputError, match="would escape"):
            caption_target(folder, name)
    (tmp_path / "secret.txt").write_text("keep")
    (folder / "a.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(InputError, match="outside") as err:
        save_captions(["pwned"], [str(tmp_path / "a.png")], "overwrite", str(folder))
    assert err.value.input_name == "output_dir"
    assert (tmp_path / "secret.txt").read_text() == "keep"
    assert check_extension("txt") == ".txt"


def test_two_images_with_one_caption_name_are_refused(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    paths = [str(_png(tmp_path / "x" / "a.png")), str(_png(tmp_path / "y" / "a.jpg"))]
    with pytest.raises(InputError, match="would both write") as err:
        save_captions(["1", "2"], paths, "skip", str(tmp_path / "caps"))
    assert err.value.input_name == "output_dir"
    report = save_captions(["1", "2"], paths, "skip", "")  # beside each image: no clash
    assert len(report.written) == 2


def test_public_contract_of_the_caption_nodes():
    from qwen3vl_pack import NODE_CLASS_MAPPINGS

    load, cap, save = (NODE_CLASS_MAPPINGS[f"Qwen3VL_{n}"] for n in ("LoadImageFolder", "BatchCaption", "SaveCaptions"))
    assert (load.RETURN_TYPES, load.RETURN_NAMES, load.OUTPUT_IS_LIST) == (("IMAGE", "STRING"), ("images", "paths"),
                                                                            (True, True))
    assert list(load.INPUT_TYPES()["required"]) == ["directory", "recursive", "extensions", "sort", "limit", "offset",
                                                    "skip_captioned"]
    assert (cap.RETURN_TYPES, cap.RETURN_NAMES, cap.OUTPUT_IS_LIST, cap.INPUT_IS_LIST) == (
        ("STRING", "STRING"), ("captions", "report"), (True, False), True)  # report appended (issue 21)
    req = cap.INPUT_TYPES()["required"]
    assert list(req) == ["model", "images", "style", "batch_size", "preset", "max_new_tokens", "prefix", "suffix"]
    assert list(cap.INPUT_TYPES()["optional"]) == ["custom_prompt", "max_visual_tokens", "sampling", "thinking"]
    assert req["preset"][1]["default"] == "Greedy" and "tags" in req["style"][0] and "custom" in req["style"][0]
    assert save.OUTPUT_NODE is True and save.INPUT_IS_LIST is True and save.RETURN_TYPES == ("STRING",)
    assert save.INPUT_TYPES()["required"]["policy"][0] == ["skip", "overwrite", "append"]
    assert save.INPUT_TYPES()["required"]["policy"][1]["default"] == "skip"
    assert Qwen3VLSaveCaptions().save([], [], ["skip"], [".txt"])["result"][0].startswith("0 captions: nothing")


def test_caption_extension_without_dot_matches_what_save_captions_writes(tmp_path):
    from PIL import Image

    from qwen3vl_pack.utils.image_files import list_image_files

    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    (tmp_path / "a.txt").write_text("hand-written", encoding="utf-8")
    files, done = list_image_files(str(tmp_path), skip_captioned=True, caption_extension="txt")
    assert [f.name for f in files] == ["b.png"] and done == 1
