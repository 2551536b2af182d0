"""Image files on disk: list a folder (sorted, filtered, paged) and read any image as RGB.

Reading applies the EXIF orientation and turns every PIL mode into 8-bit RGB: CMYK, palette,
16-bit and 32-bit grey, and images with alpha (composited on white, which is how such images
are shown and what a captioner should see, rather than whatever colour hides under alpha 0).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from .captions import caption_folder, check_extension
from .errors import InputError
from .images import MAX_ASPECT

logger = logging.getLogger(__name__)

DEFAULT_EXTENSIONS = ".png, .jpg, .jpeg, .webp, .bmp, .tif, .tiff, .gif"
SORT_ORDERS = ("natural", "name", "modified")
# What a broken or hostile image file can raise while PIL identifies or decodes it.
READ_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)


def parse_extensions(text: str, input_name: str = "extensions") -> tuple[str, ...]:
    """``"png, .JPG;webp"`` -> ``(".png", ".jpg", ".webp")``."""
    exts = []
    for part in re.split(r"[\s,;|]+", text or ""):
        part = part.strip().lower()
        if part:
            exts.append(part if part.startswith(".") else "." + part)
    if not exts:
        raise InputError(input_name, "lists no file extension.", f"Use e.g. {DEFAULT_EXTENSIONS!r}.")
    return tuple(dict.fromkeys(exts))


def _natural_key(text: str) -> list:
    return [(0, int(tok), "") if tok.isdigit() else (1, 0, tok.lower()) for tok in re.split(r"(\d+)", text)]


def check_directory(directory: str, input_name: str = "directory") -> Path:
    """An existing folder, or an InputError that says what is wrong with it."""
    if not directory or not str(directory).strip():
        raise InputError(input_name, "is empty.", "Type the full path of a folder of images.")
    path = Path(os.path.expandvars(str(directory).strip())).expanduser()
    if not path.exists():
        raise InputError(input_name, f"folder {str(path)!r} does not exist.",
                         "Check the spelling; use the full (absolute) path of a folder of images.")
    if not path.is_dir():
        raise InputError(input_name, f"{str(path)!r} is a file, not a folder.", "Give the folder that holds the images.")
    return path.resolve()


def _walk(root: Path, recursive: bool) -> Iterator[Path]:
    """Every non-hidden file under ``root`` (hidden folders such as .git are not entered)."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")] if recursive else []
        for name in files:
            if not name.startswith("."):
                yield Path(folder) / name


def caption_file_for(image_path: Path, caption_dir: Path | None, extension: str) -> Path:
    """Where the caption of ``image_path`` lives: beside it, or in ``caption_dir``."""
    return (caption_dir or image_path.parent) / (image_path.stem + extension)


def list_image_files(directory: str, recursive: bool = False, extensions: str = DEFAULT_EXTENSIONS,
                     sort: str = "natural", limit: int = 0, offset: int = 0, skip_captioned: bool = False,
                     caption_dir: str = "", caption_extension: str = ".txt") -> tuple[list[Path], int]:
    """The image files of a folder, in a stable order.

    Order of operations: list -> sort -> drop already-captioned (``skip_captioned``) -> ``offset`` ->
    ``limit`` (0 = all). So with ``skip_captioned`` each run picks up where the last one stopped.
    Returns ``(files, already_captioned_count)``. A folder without any matching file is an error; a folder
    whose images are all captioned gives an empty list.
    """
    root = check_directory(directory)
    exts = parse_extensions(extensions)
    if sort not in SORT_ORDERS:
        raise InputError("sort", f"unknown order {sort!r}.", f"Choose one of {', '.join(SORT_ORDERS)}.")
    if limit < 0 or offset < 0:
        name = "limit" if limit < 0 else "offset"
        raise InputError(name, f"must be >= 0, got {limit if limit < 0 else offset}.", "Use 0 for no limit/offset.")
    files = [p for p in _walk(root, recursive) if p.suffix.lower() in exts]
    if not files:
        where = "or its subfolders " if recursive else ""
        raise InputError("directory", f"folder {str(root)!r} {where}has no image files ({', '.join(exts)}).",
                         "Point it at a folder of images, turn on recursive for subfolders, or widen extensions.")
    if sort == "modified":
        files.sort(key=lambda p: (p.stat().st_mtime, str(p)))
    elif sort == "name":
        files.sort(key=lambda p: str(p.relative_to(root)))
    else:
        files.sort(key=lambda p: _natural_key(str(p.relative_to(root))))
    done = 0
    if skip_captioned:
        cdir, ext = caption_folder(caption_dir), check_extension(caption_extension, "caption_extension")
        todo = [p for p in files if not caption_file_for(p, cdir, ext).is_file()]
        done = len(files) - len(todo)
        files = todo
    files = files[offset:]
    return (files[:limit] if limit else files), done


def folder_fingerprint(files: Iterable[Path], caption_dir: str = "", caption_extension: str = ".txt") -> str:
    """A hash of names, sizes, times and caption presence: changes when the folder's content does."""
    cdir, ext = caption_folder(caption_dir), check_extension(caption_extension, "caption_extension")
    digest = hashlib.sha256()
    for path in files:
        st = path.stat()
        captioned = caption_file_for(path, cdir, ext).is_file()
        digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{captioned}\n".encode())
    return digest.hexdigest()


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image -> 8-bit RGB (EXIF orientation applied, alpha composited on white)."""
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(image, dtype=np.float64)
        peak = float(arr.max()) if arr.size else 0.0
        if mode.startswith("I;16") or peak > 255:  # 16-bit grey (PNG/TIFF): 0..65535 -> 0..255
            arr = arr / 257.0
        elif mode == "F" and peak <= 1.0:  # float grey in 0..1
            arr = arr * 255.0
        image = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
        mode = "L"
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if mode == "RGB" else image.convert("RGB")


def read_rgb(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image file as RGB. Raises one of ``READ_ERRORS`` if it cannot."""
    with Image.open(path) as im:
        im.load()
        return to_rgb(im)


def fit_pixels(image: Image.Image, max_pixels: int) -> Image.Image:
    """Downscale (keeping the aspect ratio) so ``width * height <= max_pixels``; 0 = unchanged."""
    w, h = image.size
    if not max_pixels or w * h <= max_pixels:
        return image
    scale = (max_pixels / (w * h)) ** 0.5
    return image.resize((max(1, int(w * scale)), max(1, int(h * scale))), Image.Resampling.LANCZOS)


def rgb_to_comfy(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image -> ComfyUI IMAGE float32 ``[1, H, W, 3]`` in 0..1."""
    arr = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(arr.astype(np.float32) / 255.0).unsqueeze(0)


def iter_readable(paths: Iterable[Path], skipped: list[Path] | None = None) -> Iterator[tuple[Path, Image.Image]]:
    """``(path, RGB image)`` for each readable file, lazily; unreadable files are logged and added to ``skipped``."""
    for path in paths:
        try:
            image = read_rgb(path)
            if max(image.size) > MAX_ASPECT * max(1, min(image.size)):
                raise ValueError(f"{image.width}x{image.height} is too elongated for Qwen3-VL (over {MAX_ASPECT}:1)")
        except READ_ERRORS as err:
            logger.warning("skipping unreadable image %s (%s: %s)", path, type(err).__name__, err)
            if skipped is not None:
                skipped.append(path)
            continue
        yield path, image
