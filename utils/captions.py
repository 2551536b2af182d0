"""Captions for training sets: prompts per style, clean one-line text, trigger words, safe caption files.

Trainers (kohya sd-scripts, OneTrainer, ai-toolkit) read ``<image stem>.txt`` beside the image and
often only its first line, so captions are written as one line of UTF-8 text.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

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


def build_caption_prompt(style: str, custom_prompt: str = "") -> str:
    """The instruction for one caption style; ``custom_prompt`` is appended (or, for ``custom``, used alone)."""
    extra = (custom_prompt or "").strip()
    if style == "custom":
        if not extra:
            raise InputError("custom_prompt", "is empty but style is 'custom'.",
                             "Type the captioning instruction, or choose another style.")
        return extra
    if style not in STYLE_PROMPTS:
        raise InputError("style", f"unknown style {style!r}.", f"Choose one of {', '.join(STYLES)}.")
    return f"{STYLE_PROMPTS[style]} {extra}" if extra else STYLE_PROMPTS[style]


def _normalise_tags(text: str) -> str:
    seen: dict[str, None] = {}
    for tag in re.split(r"[,\n;]+", text):
        tag = re.sub(r"\s+", " ", tag).strip(" .-*\t")
        if tag and tag.lower() not in (t.lower() for t in seen):
            seen[tag] = None
    return ", ".join(seen)


def finish_caption(text: str, style: str = "detailed", prefix: str = "", suffix: str = "") -> str:
    """One clean line: whitespace collapsed, tags de-duplicated, trigger words joined with ``", "``."""
    body = _normalise_tags(text) if style == "tags" else re.sub(r"\s+", " ", text or "").strip()
    head = (prefix or "").strip().rstrip(",").strip()
    tail = (suffix or "").strip().lstrip(",").strip()
    return ", ".join(part for part in (head, body, tail) if part)


def check_extension(extension: str, input_name: str = "extension") -> str:
    """A caption file extension such as ``.txt``: one plain name part, no folder parts."""
    ext = (extension or "").strip()
    if ext and not ext.startswith("."):
        ext = "." + ext
    if len(ext) < 2 or any(c in ext for c in '/\\:*?"<>|\0') or ".." in ext:
        raise InputError(input_name, f"{extension!r} is not a file extension.",
                         "Use a plain extension such as .txt or .caption (no folders, no '..').")
    return ext


def caption_target(folder: Path, name: str, input_name: str = "paths") -> Path:
    """``folder / name``, refusing any name that would land outside ``folder`` (``../x``, ``/abs``, symlinks)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise InputError(input_name, f"the caption file name {name!r} would escape {str(folder)!r}.",
                         "Caption files are named <image stem><extension>; use plain image file names.")
    target = folder / name
    base = folder.resolve()
    if target.resolve().parent != base:
        raise InputError(input_name, f"{str(target)!r} resolves outside {str(base)!r} (a symlink?).",
                         "Remove the link or choose another output_dir.")
    return target


def check_writable(folder: Path, input_name: str) -> None:
    """Create ``folder`` if needed and prove a file can be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".caption-probe-", delete=True):
            pass
    except OSError as err:
        raise InputError(input_name, f"cannot write to folder {str(folder)!r} ({err.strerror or err}).",
                         "Choose a folder you can write to, or fix its permissions.") from err


def write_caption(target: Path, text: str, policy: str = "skip") -> str:
    """Write one caption file under ``policy``; returns ``"written"``, ``"skipped"`` or ``"appended"``.

    ``skip`` never touches an existing file (hand-written captions are safe); ``overwrite`` replaces it
    atomically; ``append`` adds the caption as a new line.
    """
    if policy not in POLICIES:
        raise InputError("policy", f"unknown policy {policy!r}.", f"Choose one of {', '.join(POLICIES)}.")
    data = text + "\n"
    if policy == "append" and target.exists():
        old = target.read_text(encoding="utf-8", errors="replace")
        sep = "" if not old or old.endswith("\n") else "\n"
        with open(target, "a", encoding="utf-8", newline="\n") as f:
            f.write(sep + data)
        return "appended"
    if policy == "skip":
        try:
            with open(target, "x", encoding="utf-8", newline="\n") as f:
                f.write(data)
        except FileExistsError:
            return "skipped"
        return "written"
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return "written"


@dataclass
class SaveReport:
    """What :func:`save_captions` did, per outcome."""

    written: list[Path] = field(default_factory=list)
    appended: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)

    def add(self, status: str, target: Path) -> None:
        getattr(self, status).append(target)

    def text(self) -> str:
        total = len(self.written) + len(self.appended) + len(self.skipped)
        if not total:
            return "0 captions: nothing to write (no images came in; with skip_captioned, all may be captioned)."
        lines = [f"{total} caption(s): {len(self.written)} written, {len(self.appended)} appended, "
                 f"{len(self.skipped)} skipped (file already there; policy skip)"]
        for label, items in (("written", self.written), ("appended", self.appended), ("skipped", self.skipped)):
            lines += [f"{label}: {p}" for p in items]
        return "\n".join(lines)


def caption_folder(folder: str) -> Path | None:
    """A caption folder input (``$VARS`` and ``~`` expanded) as an absolute path; empty = beside each image."""
    return Path(os.path.expandvars(folder.strip())).expanduser().resolve() if folder and folder.strip() else None


def plan_targets(paths: Sequence[str], output_dir: str = "", extension: str = ".txt") -> list[Path]:
    """Caption file for each image path (beside it, or in ``output_dir``), checked and without clashes."""
    ext = check_extension(extension)
    out = caption_folder(output_dir)
    if out is not None and out.exists() and not out.is_dir():
        raise InputError("output_dir", f"{str(out)!r} is a file, not a folder.", "Give a folder for the captions.")
    targets, owners = [], {}
    for raw in paths:
        if not isinstance(raw, str) or not raw.strip():
            raise InputError("paths", f"{raw!r} is not an image path.",
                             "Connect the paths output of Qwen3-VL Load Image Folder.")
        image = Path(raw.strip()).expanduser()
        folder = out if out is not None else Path(os.path.abspath(image)).parent  # beside the link, not its target
        target = caption_target(folder, image.stem + ext, "output_dir" if out is not None else "paths")
        if target in owners:
            raise InputError("output_dir" if out is not None else "paths",
                             f"{owners[target]!r} and {raw!r} would both write {str(target)!r}.",
                             "Leave output_dir empty to write each caption beside its image, or caption "
                             "these folders separately.")
        owners[target] = raw
        targets.append(target)
    folders = {t.parent for t in targets}
    for folder in sorted(folders):
        check_writable(folder, "output_dir" if out is not None else "paths")
    return targets


def save_captions(captions: Sequence[str], paths: Sequence[str], policy: str = "skip", output_dir: str = "",
                  extension: str = ".txt") -> SaveReport:
    """Write ``captions[i]`` to the caption file of ``paths[i]``; checks everything before writing anything."""
    if len(captions) != len(paths):
        raise InputError("paths", f"{len(paths)} path(s) for {len(captions)} caption(s).",
                         "Connect captions and paths that come from the same images (Load Image Folder -> "
                         "Batch Caption), without filtering one of them.")
    if policy not in POLICIES:
        raise InputError("policy", f"unknown policy {policy!r}.", f"Choose one of {', '.join(POLICIES)}.")
    report = SaveReport()
    for caption, target in zip(captions, plan_targets(paths, output_dir, extension), strict=True):
        report.add(write_caption(target, str(caption), policy), target)
    logger.info("captions: %d written, %d appended, %d skipped", len(report.written), len(report.appended),
                len(report.skipped))
    return report
