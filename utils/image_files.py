"""Image files on disk: list a folder (sorted, filtered, paged) and read any image as RGB.

Reading applies the EXIF orientation and turns every PIL mode into 8-bit RGB: CMYK, palette,
16-bit and 32-bit grey, and images with alpha (composited on white, which is how such images
are shown and what a captioner should see, rather than whatever colour hides under alpha 0).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import stat
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from .captions import caption_folder, check_extension
from .errors import InputError
from .images import MAX_ASPECT
from .safe_files import file_kind, open_regular, printable

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
    """Every non-hidden file name under ``root`` (hidden folders such as .git are not entered; links to folders
    are not followed, so a link loop cannot recurse)."""

    def unreadable(err: OSError) -> None:
        logger.warning("cannot list %s (%s); its images are left out", printable(err.filename or "?"),
                       err.strerror or err)

    for folder, dirs, files in os.walk(root, onerror=unreadable):
        dirs[:] = [d for d in dirs if not d.startswith(".")] if recursive else []
        for name in files:
            if not name.startswith("."):
                yield Path(folder) / name


def _regular_images(paths: Iterable[Path]) -> list[Path]:
    """Only regular files (links followed): FIFOs, sockets, devices, dangling links and link loops are left out
    with one warning each, so nothing is ever opened for a blocking read and every sort order can stat them."""
    kept = []
    for path in paths:
        try:
            mode = os.stat(path).st_mode
        except OSError as err:
            logger.warning("skipping %s: %s (a dangling symbolic link or a link loop?)", printable(path),
                           err.strerror or err)
            continue
        if stat.S_ISREG(mode):
            kept.append(path)
        else:
            logger.warning("skipping %s: it is %s, not an image file", printable(path), file_kind(mode))
    return kept


def has_caption(path: Path) -> bool:
    """A caption file is there: a regular file with something in it (a 0-byte file left by a crash is not)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size > 0


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed since it was listed: it sorts first and is reported unreadable when read
        return 0.0


def check_caption_extension(extension: str, image_extensions: Iterable[str]) -> str:
    """The ``caption_extension`` input: a caption extension (never an image's) that is not one of ``extensions``."""
    ext = check_extension(extension, "caption_extension")
    if ext.lower() in set(image_extensions):
        raise InputError("caption_extension", f"{ext!r} is also in extensions: those files would be loaded as images "
                         "and counted as captions.", "Use .txt, or take it out of extensions.")
    return ext


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
    files = _regular_images(p for p in _walk(root, recursive) if p.suffix.lower() in exts)
    if not files:
        where = "or its subfolders " if recursive else ""
        raise InputError("directory", f"folder {str(root)!r} {where}has no image files ({', '.join(exts)}).",
                         "Point it at a folder of images, turn on recursive for subfolders, or widen extensions.")
    if sort == "modified":
        files.sort(key=lambda p: (_mtime(p), str(p)))
    elif sort == "name":
        files.sort(key=lambda p: str(p.relative_to(root)))
    else:
        files.sort(key=lambda p: _natural_key(str(p.relative_to(root))))
    done = 0
    if skip_captioned:
        cdir, ext = caption_folder(caption_dir), check_caption_extension(caption_extension, exts)
        todo = [p for p in files if not has_caption(caption_file_for(p, cdir, ext))]
        done = len(files) - len(todo)
        files = todo
    files = files[offset:]
    return (files[:limit] if limit else files), done


def folder_fingerprint(files: Iterable[Path], caption_dir: str = "", caption_extension: str = ".txt") -> str:
    """A hash of names, sizes, times and caption presence: changes when the folder's content does."""
    cdir, ext = caption_folder(caption_dir), check_extension(caption_extension, "caption_extension")
    digest = hashlib.sha256()
    for path in files:
        try:
            st = path.stat()
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:  # gone since it was listed
            size = mtime = -1
        captioned = has_caption(caption_file_for(path, cdir, ext))
        digest.update(os.fsencode(path) + f"\0{size}\0{mtime}\0{captioned}\n".encode())
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


def read_error_text(err: BaseException) -> str:
    """Why a file could not be read, for people: PIL's "cannot identify image file <_io.BufferedReader name=3>"
    becomes "not an image in a format Pillow reads (or a damaged one)"."""
    if isinstance(err, Image.UnidentifiedImageError):
        return "not an image in a format Pillow reads (or a damaged one)"
    return f"{type(err).__name__}: {err}"


def read_rgb(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image file as RGB. Raises one of ``READ_ERRORS`` if it cannot.

    FIFOs, sockets and devices are refused without a blocking read (:func:`utils.safe_files.open_regular`).
    """
    with open_regular(path) as f, Image.open(f) as im:
        im.load()
        return to_rgb(im)


def megapixel_budget(megapixels, input_name: str = "max_megapixels") -> int:
    """A megapixel input (0 = keep full size) as a pixel count; NaN, inf, negative and absurd values refused."""
    ok = isinstance(megapixels, (int, float)) and not isinstance(megapixels, bool) and math.isfinite(megapixels)
    if not ok or not 0 <= megapixels <= 10_000:
        raise InputError(input_name, f"must be a number from 0 to 10000, got {megapixels!r}.",
                         "Use 0 to keep full size, or e.g. 1.0 for about 1000x1000 pixels.")
    return int(megapixels * 1_000_000)


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
            logger.warning("skipping unreadable image %s (%s)", printable(path), read_error_text(err))
            if skipped is not None:
                skipped.append(path)
            continue
        yield path, image
