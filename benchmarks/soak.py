"""Soak: 200 consecutive node calls in one process on the tiny model (mixed image sizes and counts,
text only, one video, one grounding). Reports errors and RSS at call 20 vs call 200.

    python benchmarks/soak.py [--calls 200]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time

from _common import import_pack, tiny_model


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200)
    args = ap.parse_args()

    import torch

    import_pack()
    from qwen3vl_pack.nodes.generate import Qwen3VLGenerate
    from qwen3vl_pack.nodes.grounding import Qwen3VLGrounding
    from qwen3vl_pack.nodes.loader import Qwen3VLModelLoader
    from qwen3vl_pack.utils.node_options import check_sampling

    path = tiny_model("dense")
    (bundle,) = Qwen3VLModelLoader().load("", "fp32", "sdpa", "none", "cpu", True, model_path=str(path))
    gen, ground = Qwen3VLGenerate(), Qwen3VLGrounding()
    g = torch.Generator().manual_seed(0)
    errors, rss, start = [], {}, time.perf_counter()
    video_at, grounding_at = args.calls // 2, args.calls // 3
    for i in range(1, args.calls + 1):
        try:
            if i == video_at:
                frames = torch.rand(90, 120, 160, 3, generator=g)
                gen.generate(bundle, "What happens?", "Greedy", 16, video=frames, video_fps=30.0)
            elif i == grounding_at:
                ground.ground(bundle, torch.rand(2, 96, 128, 3, generator=g), "cat, dog", "boxes", 32, "Greedy")
            elif i % 5 == 0:
                gen.generate(bundle, "Write a short poem.", "Text", 16, sampling=check_sampling(seed=i))
            else:
                n = 1 + i % 3
                h, w = 64 + 32 * (i % 7), 64 + 48 * (i % 5)
                gen.generate(bundle, "Describe.", "VL" if i % 2 else "Greedy", 16, sampling=check_sampling(seed=i) if i % 2 else None,
                             image=torch.rand(n, h, w, 3, generator=g))
        except Exception as err:  # noqa: BLE001 - a soak counts every failure, whatever its type
            errors.append((i, repr(err)))
        if i in (20, args.calls) or i % 50 == 0:
            gc.collect()
            rss[i] = rss_mb()
    elapsed = time.perf_counter() - start
    sys.stdout.write(f"calls={args.calls} errors={len(errors)} time={elapsed:.1f}s\n")
    for i, e in errors[:5]:
        sys.stdout.write(f"  error at call {i}: {e}\n")
    sys.stdout.write("RSS MB by call: " + ", ".join(f"{k}: {v:.0f}" for k, v in sorted(rss.items())) + "\n")
    sys.stdout.write(f"RSS call {args.calls} / call 20 = {rss[args.calls] / rss[20]:.3f} "
                     f"({rss[args.calls] - rss[20]:+.0f} MB)\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
