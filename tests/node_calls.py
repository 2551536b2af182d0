"""Shared helpers for the hostile-input tests: run Generate as a graph would, and fail instead of hanging."""

from __future__ import annotations

import signal
from contextlib import contextmanager

SAMPLING_NAMES = ("temperature", "top_p", "top_k", "repetition_penalty", "presence_penalty", "seed")
VIDEO_OPTION_NAMES = ("sample_fps", "max_frames", "max_video_frame_tokens")


def generate_node(model, max_new_tokens: int = 2, **kw):
    """Qwen3-VL Generate as a graph runs it: sampling values and the seed come through a Qwen3-VL Sampling node,
    video sampling through a Qwen3-VL Video Options node (their checks are the ones these nodes run)."""
    from qwen3vl_pack.nodes.generate import Qwen3VLGenerate
    from qwen3vl_pack.utils.node_options import check_sampling, check_video_options

    sampling = {k: kw.pop(k) for k in SAMPLING_NAMES if k in kw}
    video = {k: kw.pop(k) for k in VIDEO_OPTION_NAMES if k in kw}
    custom = kw.get("preset") == "Custom"  # the old Custom preset = a connected Sampling node
    if custom:
        kw.pop("preset")
    args = dict(prompt="Describe.", preset="Greedy", max_new_tokens=max_new_tokens)
    args.update(kw)
    if sampling or custom:
        args["sampling"] = check_sampling(**sampling)
    if video:
        args["video_options"] = check_video_options(**video)
    return Qwen3VLGenerate().generate(model, **args)


@contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the suite) if the block blocks longer than ``seconds``."""
    def expired(signum, frame):
        raise TimeoutError(f"blocked for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
