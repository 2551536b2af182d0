"""``python cli.py caption DIR``: caption a folder of images into ``<stem>.txt`` files, resumably.

    python cli.py caption ~/datasets/dog --model /models/Qwen3-VL-8B-Instruct --style training \\
        --prefix "ohwx dog" --batch-size 8

Files are read and captioned one batch at a time and each batch's captions are written at once, so
memory stays flat and an interrupted run (Ctrl-C) resumes where it stopped: with the default
policy ``skip``, images that already have a caption file are not captioned again.
"""

from __future__ import annotations

import argparse
import logging
import sys

logger = logging.getLogger(__name__)


def add_caption_parser(sub, add_model_args, add_generation_args) -> argparse.ArgumentParser:
    from .loaders.batch import MAX_BATCH_SIZE
    from .utils.captions import POLICIES, STYLES
    from .utils.image_files import DEFAULT_EXTENSIONS, SORT_ORDERS

    p = sub.add_parser("caption", help="caption every image of a folder into <stem>.txt files (resumable)")
    p.add_argument("directory", help="folder of images")
    p.add_argument("--recursive", action="store_true", help="also caption images in subfolders")
    p.add_argument("--extensions", default=DEFAULT_EXTENSIONS, help="image extensions, comma-separated")
    p.add_argument("--sort", choices=SORT_ORDERS, default="natural")
    p.add_argument("--limit", type=int, default=0, help="caption at most N images (0 = all)")
    p.add_argument("--offset", type=int, default=0, help="skip the first N images (after skipping captioned ones)")
    p.add_argument("--style", choices=STYLES, default="training")
    p.add_argument("--prompt", default="", help="extra instruction (the whole prompt with --style custom)")
    p.add_argument("--batch-size", type=int, default=8, help=f"images per generate call (1..{MAX_BATCH_SIZE})")
    p.add_argument("--prefix", default="", help="trigger words put before every caption")
    p.add_argument("--suffix", default="", help="text put after every caption")
    p.add_argument("--output-dir", default="", help="folder for the caption files (default: beside each image)")
    p.add_argument("--extension", default=".txt", help="caption file extension")
    p.add_argument("--policy", choices=POLICIES, default="skip",
                   help="existing caption file: skip (default: keep it, and do not caption that image), "
                        "overwrite, or append")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_model_args(p)
    add_generation_args(p, "Greedy", "off")
    p.set_defaults(max_new_tokens=256)
    return p


def _summary(summary, already: int, interrupted: bool) -> str:
    from .utils.captions import CUT_OFF_ADVICE
    from .utils.safe_files import printable

    rep = summary.report
    rate = summary.captioned / summary.seconds if summary.seconds > 0 else 0.0
    head = "interrupted: " if interrupted else ""
    lines = [f"{head}captioned {summary.captioned} image(s) in {summary.seconds:.1f} s ({rate:.2f} images/s): "
             f"{len(rep.written)} written, {len(rep.appended)} appended, {len(rep.skipped)} skipped (file appeared "
             f"meanwhile); {already} already captioned before this run; {len(summary.unreadable)} unreadable"]
    lines += [f"unreadable: {printable(p)}" for p in summary.unreadable]  # names that are not UTF-8 print as \xNN
    if rep.cut_off:
        lines.append(f"{len(rep.cut_off)} caption(s) cut off while thinking, not written:")
        lines += [f"cut off: {printable(p)}" for p in rep.cut_off]
        lines.append(CUT_OFF_ADVICE.replace("max_new_tokens", "--max-new-tokens"))
    if interrupted:
        lines.append("Run the same command again to continue where it stopped.")
    return "\n".join(lines)


def cmd_caption(args, load_from_args, options_from_args, out) -> int:
    from tqdm import tqdm

    from .loaders.batch import FolderSummary, caption_files, make_job
    from .utils.captions import check_extension
    from .utils.errors import InputError
    from .utils.image_files import iter_readable, list_image_files

    options = options_from_args(args)
    job = make_job(args.style, options, args.prompt, args.batch_size, args.prefix, args.suffix,
                   args.min_visual_tokens, args.max_visual_tokens)
    extension = check_extension(args.extension, "--extension")
    files, already = list_image_files(args.directory, args.recursive, args.extensions, args.sort, args.limit,
                                      args.offset, args.policy == "skip", args.output_dir, extension)
    if not files:
        out(f"nothing to do: all {already} image(s) already have a {extension} caption")
        return 0
    unreadable: list = []
    if not already and next(iter_readable(files, unreadable), None) is None:  # before loading any model
        names = ", ".join(p.name for p in unreadable[:5]) + (" ..." if len(unreadable) > 5 else "")
        raise InputError("directory", f"none of the {len(files)} image file(s) to caption could be read ({names}).",
                         "Check the files (the log says why each was skipped), or point at another folder.")
    bundle = load_from_args(args)
    summary = FolderSummary()
    bar = tqdm(total=len(files), unit="img", file=sys.stderr, disable=args.no_progress, dynamic_ncols=True)
    try:
        caption_files(bundle, files, job, args.policy, args.output_dir, extension, on_progress=bar.update,
                      summary=summary)
    except KeyboardInterrupt:
        bar.close()
        out(_summary(summary, already, interrupted=True))
        return 130
    bar.close()
    out(_summary(summary, already, interrupted=False))
    return 1 if summary.report.cut_off else 0  # not everything was captioned: raise --max-new-tokens
