"""Captions for training sets: prompts per style, clean one-line text, trigger words, safe caption files.

Trainers (kohya sd-scripts, OneTrainer, ai-toolkit) read ``<image stem>.txt`` beside the image and
often only its first line, so captions are written as one line of UTF-8 text.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from .errors import InputError
from .messages import check_text
from .safe_files import NotRegularFileError, open_regular, printable, read_no_follow, write_atomic

logger = logging.getLogger(__name__)

STYLE_PROMPTS: dict[str, str] = {
    "short": "Describe this image in one short sentence.",
    "detailed": "Describe this image in detail: the subjects, their appearance and actions, the setting, "
                "the composition, the lighting and the colours. Write one paragraph of plain prose.",
    "tags": "List tags for this image as a comma-separated list of short lowercase keywords (subjects, "
            "attributes, clothing, actions, setting, style). Output only the tags.",
    "training": "Write a caption for this image to train an image generation model. Describe only what is "
                "visible: the subject, its appearance, pose and clothing, the background, the framing, the "
                "lighting and the art style, in one or two plain sentences. No opinions, no introductions.",
}
STYLES = (*STYLE_PROMPTS, "custom")
POLICIES = ("skip", "overwrite", "append")
# A caption file must never be (or replace) an image or a video: every extension PIL or a video loader reads.
MEDIA_EXTENSIONS = frozenset(Image.registered_extensions()) | {
    ".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".heic", ".heif", ".jxl", ".avif", ".exr",
    ".hdr", ".svg", ".raw", ".dng", ".cr2", ".nef", ".arw", ".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v",
    ".wmv", ".flv", ".mpg", ".mpeg", ".safetensors"}
# First bytes of image files: an existing "caption" that starts like this is an image and is never replaced.
IMAGE_SIGNATURES = (b"\x89PNG", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*", b"\x00\x00\x00\x0cjP",
                    b"8BPS", b"qoif")
MAX_CAPTION_BYTES = 16 * 1024 * 1024  # an existing caption bigger than this is not a caption: append refuses it


def build_caption_prompt(style: str, custom_prompt: str = "") -> str:
    """The instruction for one caption style; ``custom_prompt`` is appended (or, for ``custom``, used alone)."""
    extra = check_text(custom_prompt, "custom_prompt").strip()
    if style == "custom":
        if not extra:
            raise InputError("custom_prompt", "is empty but style is 'custom'.",
                             "Type the captioning instruction, or choose another style.")
        return extra
    if style not in STYLE_PROMPTS:
        raise InputError("style", f"unknown style {style!r}.", f"Choose one of {', '.join(STYLES)}.")
    return f"{STYLE_PROMPTS[style]} {extra}" if extra else STYLE_PROMPTS[style]


def one_line(text: str) -> str:
    """Every run of whitespace, line and paragraph separators included, folded to one space; ends stripped."""
    return " ".join((text or "").split())


def _normalise_tags(text: str) -> str:
    seen: dict[str, None] = {}
    for tag in re.split(r"[,\n;]+", text):
        tag = re.sub(r"\s+", " ", tag).strip(" .-*\t")
        if tag and tag.lower() not in (t.lower() for t in seen):
            seen[tag] = None
    return ", ".join(seen)


def finish_caption(text: str, style: str = "detailed", prefix: str = "", suffix: str = "") -> str:
    """One clean line: whitespace collapsed, tags de-duplicated, trigger words joined with ``", "``."""
    body = _normalise_tags(text) if style == "tags" else one_line(text)
    head = (prefix or "").strip().rstrip(",").strip()
    tail = (suffix or "").strip().lstrip(",").strip()
    return ", ".join(part for part in (head, body, tail) if part)


def check_extension(extension: str, input_name: str = "extension") -> str:
    """A caption file extension such as ``.txt``: one plain name part, no folder parts, never an image's."""
    ext = (extension or "").strip()
    if ext and not ext.startswith("."):
        ext = "." + ext
    if len(ext) < 2 or any(c in ext for c in '/\\:*?"<>|\0') or ".." in ext or not ext.isprintable():
        raise InputError(input_name, f"{extension!r} is not a file extension.",
                         "Use a plain extension such as .txt or .caption (no folders, no '..').")
    last = "." + ext.rsplit(".", 1)[-1].lower()
    if last in MEDIA_EXTENSIONS:
        raise InputError(input_name, f"{ext!r} is an image, video or model file extension: caption files with it "
                         "would replace images (or be read as images).",
                         "Use .txt (what kohya, OneTrainer and ai-toolkit read) or .caption.")
    return ext


def caption_target(folder: Path, name: str, input_name: str = "paths") -> Path:
    """``folder / name``, refusing any name that would land outside ``folder`` (``../x``, ``/abs``, symlinks)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise InputError(input_name, f"the caption file name {name!r} would escape {str(folder)!r}.",
                         "Caption files are named <image stem><extension>; use plain image file names.")
    target = folder / name
    base = folder.resolve()
    if target.resolve().parent != base:
        raise InputError(input_name, f"{printable(target)!r} resolves outside {printable(base)!r} (a symlink?).",
                         "Remove the link or choose another output_dir.")
    return target


def check_writable(folder: Path, input_name: str) -> None:
    """Create ``folder`` if needed and prove a file can be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".caption-probe-", delete=True):
            pass
    except OSError as err:
        raise InputError(input_name, f"cannot write to folder {printable(folder)!r} ({err.strerror or err}).",
                         "Choose a folder you can write to, or fix its permissions.") from err


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # folder not created yet, or Windows
        return 255


def check_target(target: Path, policy: str, input_name: str = "paths") -> None:
    """Everything that would make writing ``target`` under ``policy`` fail or destroy data, before any write."""
    name_bytes = len(os.fsencode(target.name))
    if name_bytes > _name_max(target.parent if target.parent.exists() else Path(os.sep)):
        raise InputError(input_name, f"the caption file name {printable(target.name)!r} is {name_bytes} bytes, "
                         "longer than this filesystem allows.", "Rename the image to a shorter name.")
    try:
        st = os.stat(target)  # links inside the folder are followed (caption_target refused the others)
    except FileNotFoundError:
        return
    except OSError as err:
        raise InputError(input_name, f"cannot check {printable(target)!r} ({err.strerror or err}).",
                         "Remove the broken link or fix the folder's permissions.") from err
    where = f"{printable(target)!r}"
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a FIFO, socket or device)"
        raise InputError(input_name, f"the caption file {where} is {kind}.",
                         "Move it away, or choose another output_dir or extension.")
    if policy == "skip" or st.st_size == 0:
        return
    if not st.st_mode & 0o222:
        raise InputError(input_name, f"the caption file {where} is read-only; policy {policy} would replace it.",
                         "Make it writable (chmod u+w) if it may change, or use policy skip to keep it.")
    if policy == "append" and st.st_size > MAX_CAPTION_BYTES:
        raise InputError(input_name, f"{where} has {st.st_size} bytes: that is not a caption file.",
                         "Choose another extension or output_dir.")
    with open_regular(target) as f:
        head = f.read(16)
    if is_image_header(head):
        raise InputError(input_name, f"{where} holds an image, not a caption; policy {policy} would destroy it.",
                         "Choose another extension (e.g. .txt) or output_dir.")


def is_image_header(head: bytes) -> bool:
    """Whether the first 16 bytes of a file are those of an image (PNG, JPEG, GIF, TIFF, WebP, BMP, ...)."""
    return (head.startswith(IMAGE_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
            or (head[:2] == b"BM" and head[6:10] == b"\0\0\0\0"))


def _write_error(target: Path, err: OSError, input_name: str) -> InputError:
    fix = {errno.ENOSPC: "The disk is full: free some space", errno.EFBIG: "A file-size limit was hit (ulimit -f, "
           "or the filesystem's largest file): raise it", errno.EROFS: "The filesystem is read-only: choose another "
           "output_dir", errno.EACCES: "Fix the folder's permissions or choose another output_dir",
           errno.EPERM: "Fix the folder's permissions or choose another output_dir"}
    if getattr(errno, "EDQUOT", None) is not None:
        fix[errno.EDQUOT] = "The disk quota is used up: free some space"
    advice = fix.get(err.errno, "Fix the problem above")
    return InputError(input_name, f"cannot write the caption file {printable(target)!r} ({err.strerror or err}); "
                      "it was left as it was, and no partial file was written.",
                      f"{advice}, then run again: captions already written are kept and the missing ones are written.")


def write_caption(target: Path, text: str, policy: str = "skip", input_name: str = "paths") -> str:
    """Write one caption file under ``policy``; returns ``"written"``, ``"skipped"`` or ``"appended"``.

    ``skip`` never touches an existing caption (hand-written captions are safe; an empty 0-byte file left by a
    crash counts as missing); ``overwrite`` replaces it; ``append`` adds the caption as a new line. Every write is
    atomic (temp file, fsync, rename: see ``utils.safe_files``), keeps an existing file's permissions, never
    follows a link out of the folder, and leaves the old file intact on any error. The caption is exactly one
    line (whitespace, line breaks included, folded to single spaces).
    """
    if policy not in POLICIES:
        raise InputError("policy", f"unknown policy {policy!r}.", f"Choose one of {', '.join(POLICIES)}.")
    line = one_line(check_text(text, "captions"))
    data = (line + "\n").encode("utf-8")
    folder, name = target.parent, target.name
    real = Path(os.path.realpath(target))
    if real.parent == Path(os.path.realpath(folder)):  # a link to a file inside the folder: write that file
        name = real.name
    try:
        old = read_no_follow(folder, name, MAX_CAPTION_BYTES if policy == "append" else 0)
        if policy == "skip":
            if old is not None and old[1].st_size:
                return "skipped"
            return "written" if write_atomic(folder, name, data, replace=old is not None) else "skipped"
        mode = owner = None
        if old is not None:
            mode, owner = old[1].st_mode, (old[1].st_uid, old[1].st_gid)
            if old[0]:  # append: the old bytes as they are, then the caption on a line of its own
                data = old[0] + (b"" if old[0].endswith(b"\n") else b"\n") + data
        write_atomic(folder, name, data, mode=mode, owner=owner)
        return "appended" if old is not None and old[0] else "written"
    except NotRegularFileError as err:
        if policy == "skip":  # something (a link, a special file) has that name now: skip never touches it
            return "skipped"
        raise InputError(input_name, f"{err}: it changed after the checks, so it was not written.",
                         "Remove the link or special file, then run again.") from None
    except OSError as err:
        raise _write_error(target, err, input_name) from err


@dataclass
class SaveReport:
    """What :func:`save_captions` did, per outcome, and the policy it used."""

    written: list[Path] = field(default_factory=list)
    appended: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    cut_off: list[Path] = field(default_factory=list)  # still thinking at max_new_tokens: nothing written
    policy: str = "skip"

    def add(self, status: str, target: Path) -> None:
        getattr(self, status).append(target)

    def text(self) -> str:
        total = len(self.written) + len(self.appended) + len(self.skipped) + len(self.cut_off)
        if not total:
            return "0 captions: nothing to write (no images came in; with skip_captioned, all may be captioned)."
        why = " (caption file already there; policy skip keeps it)" if self.skipped else ""
        cut = f", {len(self.cut_off)} cut off while thinking (not written)" if self.cut_off else ""
        lines = [f"{total} caption(s): {len(self.written)} written, {len(self.appended)} appended, "
                 f"{len(self.skipped)} skipped{why}{cut}; policy: {self.policy}"]
        for label in ("written", "appended", "skipped"):
            lines += [f"{label}: {printable(p)}" for p in getattr(self, label)]
        lines += [f"cut off: {printable(p)}" for p in self.cut_off]
        if self.cut_off:
            lines.append(CUT_OFF_ADVICE)
        return "\n".join(lines)


CUT_OFF_ADVICE = ("A caption cut off while the model was still thinking is not written (its draft reasoning is no "
                  "caption): raise max_new_tokens (Thinking models reason first; Qwen suggests up to 40960) or use "
                  "an Instruct model, then run again (policy skip captions only what is missing).")


class CutOffCaption(str):
    """The caption of an image whose answer stopped inside the model's reasoning: empty, and never written."""

    def __new__(cls) -> CutOffCaption:
        return super().__new__(cls, "")


def caption_report(captions: Sequence[str], max_new_tokens: int) -> str:
    """Batch Caption's report: how many captions, and which images (1-based) were cut off while thinking."""
    cut = [i + 1 for i, c in enumerate(captions) if isinstance(c, CutOffCaption)]
    head = f"{len(captions) - len(cut)} of {len(captions)} image(s) captioned"
    if not cut:
        return head + "."
    return (f"{head}; {len(cut)} cut off while thinking after {max_new_tokens} tokens, no caption: image "
            f"{', '.join(map(str, cut))}. " + CUT_OFF_ADVICE)


def caption_folder(folder: str) -> Path | None:
    """A caption folder input (``$VARS`` and ``~`` expanded) as an absolute path; empty = beside each image."""
    return Path(os.path.expandvars(folder.strip())).expanduser().resolve() if folder and folder.strip() else None


def plan_targets(paths: Sequence[str], output_dir: str = "", extension: str = ".txt",
                 policy: str = "skip") -> list[Path]:
    """Caption file for each image path (beside it, or in ``output_dir``), every one checked before any write:
    inside its folder, no clashes, not an image, not a folder or special file, not read-only under overwrite or
    append, a name the filesystem takes, a folder that can be written."""
    ext = check_extension(extension)
    if policy not in POLICIES:
        raise InputError("policy", f"unknown policy {policy!r}.", f"Choose one of {', '.join(POLICIES)}.")
    out = caption_folder(output_dir)
    if out is not None and out.exists() and not out.is_dir():
        raise InputError("output_dir", f"{str(out)!r} is a file, not a folder.", "Give a folder for the captions.")
    input_name = "output_dir" if out is not None else "paths"
    targets, owners, images = [], {}, set()
    for raw in paths:
        if not isinstance(raw, str) or not raw.strip():
            raise InputError("paths", f"{raw!r} is not an image path.",
                             "Connect the paths output of Qwen3-VL Load Image Folder.")
        image = Path(raw.strip()).expanduser()
        images.add(Path(os.path.realpath(image)))
        folder = out if out is not None else Path(os.path.abspath(image)).parent  # beside the link, not its target
        target = caption_target(folder, image.stem + ext, input_name)
        if target in owners:
            raise InputError(input_name, f"{owners[target]!r} and {raw!r} would both write {str(target)!r}.",
                             "Leave output_dir empty to write each caption beside its image, or caption "
                             "these folders separately.")
        owners[target] = raw
        targets.append(target)
    for folder in sorted({t.parent for t in targets}):
        check_writable(folder, input_name)
    for target in targets:
        if Path(os.path.realpath(target)) in images:
            raise InputError(input_name, f"the caption file {printable(target)!r} is one of the images.",
                             "Use a caption extension the images do not have, e.g. .txt.")
        check_target(target, policy, input_name)
    return targets


def check_captions(captions: Sequence) -> list[str]:
    """Each caption as one line of text; None or a non-text value is refused (never written as 'None')."""
    lines = []
    for i, caption in enumerate(captions):
        if not isinstance(caption, str):
            raise InputError("captions", f"caption {i + 1} of {len(captions)} is {type(caption).__name__}, not text.",
                             "Connect the captions output of Qwen3-VL Batch Caption (or any STRING list).")
        lines.append(one_line(check_text(caption, "captions")))
    return lines


def save_captions(captions: Sequence[str], paths: Sequence[str], policy: str = "skip", output_dir: str = "",
                  extension: str = ".txt") -> SaveReport:
    """Write ``captions[i]`` to the caption file of ``paths[i]``; checks everything before writing anything."""
    if len(captions) != len(paths):
        raise InputError("paths", f"{len(paths)} path(s) for {len(captions)} caption(s).",
                         "Connect captions and paths that come from the same images (Load Image Folder -> "
                         "Batch Caption), without filtering one of them.")
    if policy not in POLICIES:
        raise InputError("policy", f"unknown policy {policy!r}.", f"Choose one of {', '.join(POLICIES)}.")
    lines = check_captions(captions)
    input_name = "output_dir" if caption_folder(output_dir) is not None else "paths"
    report = SaveReport(policy=policy)
    for caption, line, target in zip(captions, lines, plan_targets(paths, output_dir, extension, policy), strict=True):
        if isinstance(caption, CutOffCaption):
            report.add("cut_off", target)
            continue
        report.add(write_caption(target, line, policy, input_name), target)
    logger.info("captions (policy %s): %d written, %d appended, %d skipped", policy, len(report.written),
                len(report.appended), len(report.skipped))
    return report
