"""The batch captioning engine shared by the nodes and the CLI.

One caption per image, in input order, with ``batch_size`` images (one conversation each) per
left-padded ``generate`` call. Images are consumed lazily, one chunk at a time, so memory does not
grow with the number of images when the caller streams them (the CLI reads files chunk by chunk).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..utils.captions import (
    CutOffCaption,
    SaveReport,
    build_caption_prompt,
    finish_caption,
    plan_targets,
    write_caption,
)
from ..utils.errors import InputError
from ..utils.image_files import iter_readable
from ..utils.images import pil_to_chw
from ..utils.messages import build_messages, check_text
from ..utils.presets import GenerationOptions
from .backends import Hooks, backend_for, check_budget

logger = logging.getLogger(__name__)
K = TypeVar("K")
MAX_BATCH_SIZE = 256


@dataclass(frozen=True)
class CaptionJob:
    """Everything that shapes the captions of a run, already checked (see :func:`make_job`)."""

    prompt: str
    options: GenerationOptions
    style: str = "detailed"
    batch_size: int = 8
    prefix: str = ""
    suffix: str = ""
    min_visual_tokens: int = 0
    max_visual_tokens: int = 0


def make_job(style: str, options: GenerationOptions, custom_prompt: str = "", batch_size: int = 8,
             prefix: str = "", suffix: str = "", min_visual_tokens: int = 0,
             max_visual_tokens: int = 0) -> CaptionJob:
    """Check the captioning inputs once, before any image is read or any token generated."""
    prompt = build_caption_prompt(style, custom_prompt)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise InputError("batch_size", f"must be a whole number from 1 to {MAX_BATCH_SIZE}, got {batch_size!r}.",
                         "Use 8 on a GPU with room to spare, fewer if memory runs out.")
    check_budget(min_visual_tokens, max_visual_tokens)
    return CaptionJob(prompt, options, style, batch_size, check_text(prefix, "prefix"), check_text(suffix, "suffix"),
                      min_visual_tokens, max_visual_tokens)


def iter_captions(bundle, items: Iterable[tuple[K, Any]], job: CaptionJob,
                  on_step: Callable[[int], bool | None] | None = None,
                  before_batch: Callable[[], None] | None = None,
                  on_text: Callable[[str, str], object] | None = None,
                  ordered: bool = True) -> Iterator[list[tuple[K, str]]]:
    """Captions for ``(key, image)`` items, in order, a group at a time: one ``generate`` call of
    ``batch_size`` images in-process, or each answer as it arrives from a server (``max_concurrency``
    requests in flight). ``ordered=False``: a server's answers as soon as each arrives, in any order.

    ``before_batch`` runs before each call / request (e.g. to honour Cancel); ``on_step`` at every decode step.
    A model loaded with keep_loaded off is freed once the stream ends, not after every chunk. An answer cut off
    while thinking gives a :class:`CutOffCaption` (empty, never written); the other captions are kept.
    """
    budget = check_budget(job.min_visual_tokens, job.max_visual_tokens)
    backend = backend_for(bundle)
    conversations = ((key, build_messages(job.prompt, [image])) for key, image in items)
    try:
        for group in backend.generate_stream(conversations, job.options, budget, job.batch_size,
                                             Hooks(on_step=on_step, on_text=on_text), before_batch, ordered):
            yield [(key, CutOffCaption() if getattr(r, "answer_cut_off", False)  # never a draft caption
                    else finish_caption(r.text, job.style, job.prefix, job.suffix)) for key, r in group]
    finally:
        backend.release()


def caption_images(bundle, images: Sequence[Any], job: CaptionJob,
                   on_step: Callable[[int], bool | None] | None = None,
                   on_progress: Callable[[int, int], None] | None = None,
                   on_text: Callable[[str, str], object] | None = None) -> list[str]:
    """Caption images already in memory; returns one caption per image, in order.

    ``on_progress(done, total)`` runs before every batch / request and after every finished group, so ``done``
    is always the number of captions finished (progress bar, which image the live text is about, Cancel).
    """
    total, done = len(images), 0
    if not total:
        return []
    captions: list[str | None] = [None] * total

    def before_batch() -> None:
        if on_progress is not None:
            on_progress(done, total)

    for pairs in iter_captions(bundle, enumerate(images), job, on_step, before_batch, on_text):
        for index, caption in pairs:
            captions[index] = caption
        done += len(pairs)
        if on_progress is not None:
            on_progress(done, total)
    return [c for c in captions if c is not None]  # a CutOffCaption ("") where the answer was cut off


def progress_hooks(total: int, job: CaptionJob, update: Callable[[int, int], None] | None = None,
                   check: Callable[[], None] | None = None):
    """``(on_progress, on_step)`` for :func:`caption_images` that move one bar smoothly, image by image.

    The bar counts ``total * max_new_tokens`` units: each finished image is ``max_new_tokens`` units and,
    during a batch, each decode step advances every image of the batch by one. ``update(value, total)``
    draws the bar (ComfyUI ``ProgressBar.update_absolute``); ``check()`` runs first at every call (Cancel).
    """
    steps = job.options.max_new_tokens
    state = {"done": 0, "rows": 0}

    def on_progress(done: int, _total: int) -> None:
        if check is not None:
            check()
        state["done"], state["rows"] = done, min(job.batch_size, total - done)
        if update is not None:
            update(done * steps, total * steps)

    def on_step(new_tokens: int) -> None:
        if check is not None:
            check()
        if update is not None:
            update(state["done"] * steps + state["rows"] * min(new_tokens, steps), total * steps)

    return on_progress, on_step


@dataclass
class FolderSummary:
    """What :func:`caption_files` did."""

    captioned: int = 0  # answers received, cut-off ones included (see report.cut_off)
    unreadable: list[Path] = field(default_factory=list)
    report: SaveReport = field(default_factory=SaveReport)
    seconds: float = 0.0


def caption_files(bundle, files: Sequence[Path], job: CaptionJob, policy: str = "skip",
                  output_dir: str = "", extension: str = ".txt",
                  on_progress: Callable[[int], None] | None = None,
                  summary: FolderSummary | None = None) -> FolderSummary:
    """Caption image files and write each caption as soon as its batch (or, from a server, its answer) is done,
    in whatever order they finish; the report lists them in input order.

    Files are read one chunk at a time (never the whole folder at once); unreadable files are
    skipped, logged and counted. Targets are checked (writable, inside their folder, no clashes)
    before the first token. ``on_progress(n)`` gets the number of files finished since its last call.
    Pass ``summary`` to keep what was done if the run is interrupted (Ctrl-C).
    """
    start = time.perf_counter()
    targets = dict(zip(files, plan_targets([str(f) for f in files], output_dir, extension, policy), strict=True))
    summary = summary if summary is not None else FolderSummary()
    readable = ((path, pil_to_chw(image)) for path, image in iter_readable(files, summary.unreadable))
    reported_unreadable = 0
    try:
        for pairs in iter_captions(bundle, readable, job, ordered=False):
            for path, caption in pairs:
                if isinstance(caption, CutOffCaption):
                    summary.report.add("cut_off", targets[path])
                    continue
                summary.report.add(write_caption(targets[path], caption, policy), targets[path])
            summary.captioned += len(pairs)
            if on_progress is not None:
                on_progress(len(pairs) + len(summary.unreadable) - reported_unreadable)
            reported_unreadable = len(summary.unreadable)
    finally:
        summary.seconds = time.perf_counter() - start
        order = {target: i for i, target in enumerate(targets.values())}
        for done in (summary.report.written, summary.report.appended, summary.report.skipped, summary.report.cut_off):
            done.sort(key=lambda target: order.get(target, len(order)))
    if on_progress is not None and len(summary.unreadable) > reported_unreadable:
        on_progress(len(summary.unreadable) - reported_unreadable)
    return summary
