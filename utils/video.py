"""ComfyUI frame batches -> Qwen3-VL video items with true timestamps (SPEC section 4).

A ComfyUI video is an IMAGE batch ``[T, H, W, C]`` (float32, 0..1) plus the frame rate its loader reports.
Qwen3-VL reads time from text markers (``<t seconds>``, one per temporal group of 2 frames) that the
processor computes as ``frame index / fps``. So we:

1. choose frame indices evenly over the *whole* clip (``sample_fps`` frames per second, at least 4 as
   qwen-vl-utils, at most ``max_frames``; never just the first N), padded to an even count (the temporal patch is 2, so a single
   frame is repeated);
2. convert ONLY those frames, a few at a time, to uint8 at a size inside the per-frame token budget
   (no float64 or full-batch copy, no PIL image per frame);
3. hand the processor the frames with metadata ``{"fps": source fps, "frames_indices": chosen indices}``
   and ``do_sample_frames=False`` (the engine does that), so the rendered timestamps are real times in the clip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import InputError
from .images import as_batch, check_aspect, check_image_batch

TOKEN_SIDE = 32  # one visual token covers 32x32 pixels (patch 16, spatial merge 2)
TEMPORAL_PATCH = 2  # frames per temporal group (one timestamp each)
MIN_FRAMES = 4  # qwen-vl-utils' FPS_MIN_FRAMES: even a clip under 2 s gets two temporal groups
CHUNK_FRAMES = 8  # frames converted at once: bounds the float working set


@dataclass(frozen=True)
class VideoSampling:
    """How to turn a frame batch into model input (already checked by :func:`video_sampling`)."""

    video_fps: float
    sample_fps: float = 2.0
    max_frames: int = 64
    max_frame_tokens: int = 256


def video_sampling(video_fps: float, sample_fps: float = 2.0, max_frames: int = 64,
                   max_frame_tokens: int = 256) -> VideoSampling:
    """Check the video inputs; errors name the input to fix."""
    if not _positive_number(video_fps):
        raise InputError("video_fps", f"must be a frame rate > 0, got {video_fps!r}.",
                         "Connect the fps output of your video loader (VHS video_info loaded_fps, core Get Video "
                         "Components fps) or type the clip's frame rate, e.g. 24, 25 or 30.")
    if not _positive_number(sample_fps):
        raise InputError("sample_fps", f"must be > 0 frames per second, got {sample_fps!r}.",
                         "Use 2 (Qwen's default); lower it for long clips, raise it for fast action.")
    if not _whole(max_frames) or max_frames < 1:
        raise InputError("max_frames", f"must be a whole number >= 1, got {max_frames!r}.",
                         "Use e.g. 64; frames are then spread evenly over the whole clip.")
    if not _whole(max_frame_tokens) or max_frame_tokens < 1:
        raise InputError("max_video_frame_tokens", f"must be a whole number >= 1, got {max_frame_tokens!r}.",
                         "Use e.g. 256 (1 token = 32x32 pixels of a frame).")
    return VideoSampling(float(video_fps), float(sample_fps), int(max_frames), int(max_frame_tokens))


def _positive_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def sample_indices(total: int, video_fps: float, sample_fps: float, max_frames: int) -> list[int]:
    """Frame indices spread evenly over the whole clip (first and last frame included).

    ``round(duration * sample_fps)`` frames, at most ``max_frames`` and ``total``, at least :data:`MIN_FRAMES`
    (4, as qwen-vl-utils) when the clip and ``max_frames`` allow. The count is made even (frames go to the model
    in pairs): one more distinct frame when allowed, else the last index is repeated (so a 1-frame clip gives
    ``[0, 0]``). Above the minimum, qwen-vl-utils' ``smart_nframes`` floors to even where this rounds: the two
    differ by at most one pair of frames.
    """
    if total < 1:
        raise ValueError("total must be >= 1")
    wanted = round(total / video_fps * sample_fps)
    limit = min(max_frames, total)
    n = max(min(wanted, limit), min(MIN_FRAMES, limit))
    if n % TEMPORAL_PATCH and n + 1 <= limit:
        n += 1
    if n == 1:
        indices = [0]
    else:
        indices = torch.linspace(0, total - 1, n, dtype=torch.float64).round().to(torch.int64).tolist()
    while len(indices) % TEMPORAL_PATCH:
        indices.append(indices[-1])
    return indices


def frame_size(height: int, width: int, max_tokens: int, factor: int = TOKEN_SIDE,
               input_name: str = "video") -> tuple[int, int]:
    """``(height, width)`` in multiples of ``factor`` with at most ``max_tokens`` tokens of ``factor``²."""
    check_aspect(height, width, input_name, "video frame")
    h, w = float(height), float(width)
    if h < factor or w < factor:
        scale = max(factor / h, factor / w)
        h, w = h * scale, w * scale
    h_bar = max(factor, round(h / factor) * factor)
    w_bar = max(factor, round(w / factor) * factor)
    max_pixels = max_tokens * factor * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        h_bar = max(factor, math.floor(h / beta / factor) * factor)
        w_bar = max(factor, math.floor(w / beta / factor) * factor)
    return int(h_bar), int(w_bar)


def check_frames(frames, input_name: str = "video") -> torch.Tensor:
    """Shape checks on a frame batch without reading its pixels; ``[H, W, C]`` becomes one frame."""
    frames = as_batch(frames, input_name, "an IMAGE frame batch", "[T, H, W, C]", "Connect the IMAGE output of a "
                      "video loader (e.g. VHS Load Video, Get Video Components).")
    if frames.shape[0] == 0:
        raise InputError(input_name, "has 0 frames.",
                         "Check the video loader: the file may be empty or its frame range/skip settings select "
                         "nothing.")
    if frames.shape[1] == 0 or frames.shape[2] == 0:
        raise InputError(input_name, f"the frames have no pixels (shape {tuple(frames.shape)}).",
                         "Check the node that produces the frames.")
    return frames


def _convert(chunk: torch.Tensor, size: tuple[int, int], input_name: str) -> torch.Tensor:
    """A few float/uint8 ``[n, H, W, C]`` frames -> uint8 ``[n, 3, h, w]`` resized to ``size``."""
    chunk = check_image_batch(chunk, input_name)
    x = chunk.detach().to("cpu", torch.float32)
    if chunk.dtype == torch.uint8:
        x = x.div_(255.0)
    x = x.permute(0, 3, 1, 2)
    if tuple(x.shape[-2:]) != size:
        x = torch.nn.functional.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)
    return x.clamp(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)


def prepare_video(frames, sampling: VideoSampling, factor: int = TOKEN_SIDE, input_name: str = "video") -> dict:
    """A ComfyUI frame batch -> a chat-template video item with the metadata for true timestamps.

    Returns ``{"type": "video", "video": uint8 [N, 3, h, w], "video_metadata": {...}}`` where ``N`` is even,
    ``h``/``w`` are multiples of ``factor`` inside ``sampling.max_frame_tokens``, and the metadata holds the
    source fps and the chosen frame indices. Only the chosen frames are ever copied or converted.
    """
    frames = check_frames(frames, input_name)
    total, height, width = (int(s) for s in frames.shape[:3])
    indices = sample_indices(total, sampling.video_fps, sampling.sample_fps, sampling.max_frames)
    size = frame_size(height, width, sampling.max_frame_tokens, factor, input_name)
    out = torch.empty((len(indices), 3, *size), dtype=torch.uint8)
    for i in range(0, len(indices), CHUNK_FRAMES):
        chunk = indices[i:i + CHUNK_FRAMES]
        out[i:i + len(chunk)] = _convert(frames[chunk], size, input_name)
    metadata = {"total_num_frames": total, "fps": sampling.video_fps, "duration": total / sampling.video_fps,
                "frames_indices": indices, "height": size[0], "width": size[1]}
    return {"type": "video", "video": out, "video_metadata": metadata}


def describe_video(item: dict) -> str:
    """One line for ``info``: which frames of the clip the model saw."""
    meta = item["video_metadata"]
    distinct = len(set(meta["frames_indices"]))
    groups = len(meta["frames_indices"]) // TEMPORAL_PATCH
    return (f"video: {distinct} of {meta['total_num_frames']} frames at {meta['fps']:g} fps "
            f"({meta['duration']:.2f} s), frames {meta['width']}x{meta['height']}, "
            f"{groups} timestamp{'' if groups == 1 else 's'}")
