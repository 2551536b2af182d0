"""Peak memory of a long frame batch through Qwen3VL_Generate (tiny model, CPU).

    python benchmarks/video_memory.py [--frames 1000] [--size 512] [--stage node|prepare]

Builds a ComfyUI-style IMAGE batch (float32 [T, H, W, 3], 0..1), then runs the Generate node on it
(``--stage node``) or only the frame sampling/conversion (``--stage prepare``), and reports the peak
resident memory of that call above what the process held before it, next to the size of the float32
input. Only the sampled frames may be copied: a float64 copy of the batch would add 2x the input, a
uint8 copy or one PIL image per frame 1/4 of it. Run it in a fresh process (peak RSS is per process;
the peak counter is reset before the call through /proc/self/clear_refs on Linux).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from _common import import_pack, tiny_model

GIB = 1024 ** 3


def _status(field: str) -> int:
    """A /proc/self/status memory field, in bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--stage", choices=("node", "prepare"), default="node")
    args = ap.parse_args()

    import torch

    import_pack()
    from qwen3vl_pack.loaders.cache import load_model
    from qwen3vl_pack.nodes.generate import Qwen3VLGenerate
    from qwen3vl_pack.utils.video import VideoSampling, prepare_video

    bundle = load_model(str(tiny_model("dense")), [], dtype="fp32", attention="sdpa", device="cpu")
    Qwen3VLGenerate().generate(bundle, "warm up", "Greedy", 2, video=torch.rand(4, 64, 64, 3), video_fps=2.0)

    video = torch.rand(args.frames, args.size, args.size, 3, generator=torch.Generator().manual_seed(0))
    input_bytes = video.numel() * video.element_size()
    before = _status("VmRSS")
    exact = _reset_peak()
    start = time.perf_counter()
    if args.stage == "node":
        _, _, info, _ = Qwen3VLGenerate().generate(bundle, "What happens?", "Greedy", 8, video=video,
                                                   video_fps=args.fps)
        summary = info.splitlines()[0]
    else:
        item = prepare_video(video, VideoSampling(args.fps))
        summary = f"prepared {tuple(item['video'].shape)} {item['video'].dtype}"
    seconds = time.perf_counter() - start
    peak = _status("VmHWM")
    out = [
        f"stage: {args.stage}; input: {args.frames} frames of {args.size}x{args.size}, float32 "
        f"{input_bytes / GIB:.2f} GiB",
        f"{summary}",
        f"RSS before the call: {before / GIB:.2f} GiB (model, input, Python)",
        f"peak RSS during the call: {peak / GIB:.2f} GiB" + ("" if exact else " (process peak: clear_refs refused)"),
        f"extra peak over before: {(peak - before) / GIB:.3f} GiB = {(peak - before) / input_bytes:.1%} of the input",
        f"for scale: float64 copy of the batch {2 * input_bytes / GIB:.2f} GiB, uint8 copy / PIL per frame "
        f"{input_bytes / 4 / GIB:.2f} GiB",
        f"time: {seconds:.1f} s",
    ]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
