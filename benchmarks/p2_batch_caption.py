"""P2: batch captioning throughput (batch_size 8 vs 1) and peak memory (64 vs 16 images).

    HF_HUB_OFFLINE=1 python benchmarks/p2_batch_caption.py [--reps 3] [--tokens 32]
    HF_HUB_OFFLINE=1 python benchmarks/p2_batch_caption.py --families dense,qwen3_5,qwen3_5_moe   # Qwen3.5 too

Builds the tiny random Qwen3-VL in a temp dir (tests/tiny_model.py), captions 16 images of mixed sizes
under Greedy with batch_size 8 and batch_size 1, interleaved (8, 1, 8, 1, ...) so that machine load hits
both alike, checks that both give the same captions, and prints the throughput ratio. Then it measures
peak RSS (ru_maxrss) of captioning a folder of 16 and of 64 images, each in a fresh subprocess: through
the CLI engine (``caption_files``: streams the folder in chunks) and, for contrast, through the nodes
(``Load Image Folder`` holds every image in memory, as ComfyUI lists do).

``--families`` (default ``dense``: the tiny Qwen3-VL) runs the same for each tiny family of tests/tiny_model.py
(``qwen3_5`` / ``qwen3_5_moe``: the tiny Qwen3.5 and its MoE, thinking off as Batch Caption's default; they need
transformers >= 5.2) and ends with one summary line per family, side by side.

``--threads`` (default 1) sets torch's CPU threads. The tiny model's ops take microseconds, so with
several threads on a busy machine OpenMP synchronisation (~0.5 ms per op, seen here on 2 shared cores)
swamps the work and hides what batching saves; ``--threads 0`` keeps torch's default to see that too.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = [(96, 64), (200, 150), (64, 64), (320, 240), (128, 300), (80, 80), (256, 128), (150, 200),
         (512, 384), (100, 400), (240, 240), (64, 128), (300, 200), (160, 90), (400, 300), (72, 96)]


def _import_pack():
    spec = importlib.util.spec_from_file_location("qwen3vl_pack", ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["qwen3vl_pack"] = module
    spec.loader.exec_module(module)
    return module


def _arrays(n: int, scale: int = 1):
    import numpy as np

    return [np.random.default_rng(i).integers(0, 256, (SIZES[i % 16][1] * scale, SIZES[i % 16][0] * scale, 3),
                                              dtype=np.uint8) for i in range(n)]


def _load(model_dir: str):
    from qwen3vl_pack.loaders.cache import load_model

    return load_model(model_dir, [], dtype="fp32", attention="sdpa", device="cpu")


def throughput(model_dir: str, reps: int, tokens: int) -> tuple[float, bool]:
    import torch

    from qwen3vl_pack.loaders.batch import caption_images, make_job
    from qwen3vl_pack.utils.presets import resolve_options

    bundle = _load(model_dir)
    images = [torch.from_numpy(a).permute(2, 0, 1).contiguous() for a in _arrays(16)]
    jobs = {b: make_job("training", resolve_options("Greedy", tokens, thinking="off"), batch_size=b) for b in (8, 1)}
    caption_images(bundle, images[:2], jobs[8])  # warm-up
    times: dict[int, list[float]] = {8: [], 1: []}
    captions = {}
    for rep in range(reps):
        for b in (8, 1):
            start = time.perf_counter()
            captions[b] = caption_images(bundle, images, jobs[b])
            times[b].append(time.perf_counter() - start)
        _out(f"rep {rep + 1}: batch_size 8 {times[8][-1]:.2f} s, batch_size 1 {times[1][-1]:.2f} s, "
             f"ratio {times[1][-1] / times[8][-1]:.2f}x")
    med8, med1 = statistics.median(times[8]), statistics.median(times[1])
    _out(f"16 images, greedy, {tokens} new tokens max, {reps} interleaved reps, "
         f"{torch.get_num_threads()} torch thread(s)")
    _out(f"batch_size 8: median {med8:.2f} s = {16 / med8:.2f} images/s")
    _out(f"batch_size 1: median {med1:.2f} s = {16 / med1:.2f} images/s")
    _out(f"P2 throughput ratio (batch 8 / batch 1): {med1 / med8:.2f}x (goal >= 4x); "
         f"per-rep ratios {', '.join(f'{a / b:.2f}' for a, b in zip(times[1], times[8], strict=True))}")
    _out(f"best-of-{reps} ratio: {min(times[1]) / min(times[8]):.2f}x")
    _out(f"same captions with batch_size 8 and 1: {captions[8] == captions[1]}")
    return med1 / med8, captions[8] == captions[1]


def rss_child(model_dir: str, folder: str, mode: str, tokens: int) -> None:
    """Caption every image of ``folder`` (fresh process) and print peak RSS in MiB as JSON."""
    from qwen3vl_pack.loaders.batch import caption_files, caption_images, make_job
    from qwen3vl_pack.nodes.caption import Qwen3VLLoadImageFolder, _flatten_images
    from qwen3vl_pack.utils.image_files import list_image_files
    from qwen3vl_pack.utils.presets import resolve_options

    bundle = _load(model_dir)
    job = make_job("training", resolve_options("Greedy", tokens, thinking="off"), batch_size=8)
    before = _maxrss_mib()
    if mode == "cli":
        files, _ = list_image_files(folder)
        n = caption_files(bundle, files, job, policy="overwrite").captioned
    else:
        images, _paths = Qwen3VLLoadImageFolder().load(folder, False, "png", "natural", 0, 0, False)
        n = len(caption_images(bundle, _flatten_images(images), job))
    sys.stdout.write(json.dumps({"images": n, "after_load_mib": before, "peak_mib": _maxrss_mib()}) + "\n")


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def memory(model_dir: str, tmp: Path, tokens: int, threads: int) -> dict:
    from PIL import Image

    folders = {}
    for n in (16, 64):
        folders[n] = tmp / f"images{n}"
        if folders[n].is_dir():  # made for an earlier family
            continue
        folders[n].mkdir()
        for i, arr in enumerate(_arrays(n, scale=2)):  # 128..1024 px sides
            Image.fromarray(arr).save(folders[n] / f"{i:03d}.png")
    peaks = {}
    for mode in ("cli", "nodes"):
        for n in (16, 64):
            cmd = [sys.executable, __file__, "--rss-child", str(folders[n]), "--mode", mode, "--model", model_dir,
                   "--tokens", str(tokens), "--threads", str(threads)]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            peaks[mode, n] = json.loads(res.stdout.strip().splitlines()[-1])
            _out(f"{mode:5s} {n:2d} images: peak RSS {peaks[mode, n]['peak_mib']:.0f} MiB "
                 f"(after model load {peaks[mode, n]['after_load_mib']:.0f} MiB)")
    for mode in ("cli", "nodes"):
        a, b = peaks[mode, 16]["peak_mib"], peaks[mode, 64]["peak_mib"]
        _out(f"peak RSS 64 vs 16 images ({mode}): {b:.0f} / {a:.0f} MiB = {b / a:.2f}x")
    return peaks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=64, help="max new tokens (a training caption is ~40-80)")
    parser.add_argument("--model", help="tiny model dir (default: build one in a temp dir)")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="cli", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--families", default="dense", help="comma-separated: dense (Qwen3-VL), moe, qwen3_5, "
                        "qwen3_5_moe")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    _import_pack()
    if args.rss_child:
        rss_child(args.model, args.rss_child, args.mode, args.tokens)
        return 0
    from qwen3vl_pack.tests.tiny_model import build_tiny_model

    summary = []
    with tempfile.TemporaryDirectory(prefix="p2-") as tmp:
        for family in [f.strip() for f in args.families.split(",") if f.strip()]:
            _out(f"=== {family} ===")
            model_dir = args.model or str(build_tiny_model(Path(tmp) / f"tiny-{family}", family))
            ratio, same = throughput(model_dir, args.reps, args.tokens)
            peaks = {} if args.skip_memory else memory(model_dir, Path(tmp), args.tokens, args.threads)
            line = f"{family}: batch 8 / batch 1 throughput {ratio:.2f}x, same captions {same}"
            if peaks:
                line += (f", peak RSS cli 16/64 images {peaks['cli', 16]['peak_mib']:.0f}/"
                         f"{peaks['cli', 64]['peak_mib']:.0f} MiB, nodes {peaks['nodes', 16]['peak_mib']:.0f}/"
                         f"{peaks['nodes', 64]['peak_mib']:.0f} MiB")
            summary.append(line)
    _out("=== summary ===")
    for line in summary:
        _out(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
