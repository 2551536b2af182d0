"""Chat-template conversations -> OpenAI chat-completions messages (for served engines). Pure: torch + PIL.

Images are resized here to the same size the in-process processor would give them (Qwen's smart resize on a
32-pixel grid inside the visual-token budget) before they are encoded, so nothing larger than needed crosses
the wire and the server, whose own resize then keeps the size as it is, sees as many visual tokens as the local
path. Video items (from ``utils.video.prepare_video``) go as a JPEG frame list; their true source fps and frame
indices travel in ``media_io_kwargs`` so that the server's ``<t seconds>`` stamps are the local path's.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field

import torch

from .errors import InputError
from .images import smart_resize
from .video import TOKEN_SIDE

MAX_IMAGE_TOKENS = 16384  # Qwen's own ceiling per image, used when no budget is set
MIN_IMAGE_TOKENS = 4


@dataclass
class OpenAIRequest:
    """The ``messages`` of one request, the ``media_io_kwargs`` it needs, and what the vision part costs."""

    messages: list[dict]
    media_io_kwargs: dict | None = None
    visual_tokens: list[int] = field(default_factory=list)
    video_tokens: list[int] = field(default_factory=list)


def smart_size(height: int, width: int, min_pixels: int | None = None, max_pixels: int | None = None,
               factor: int = TOKEN_SIDE) -> tuple[int, int]:
    """Qwen's ``smart_resize``: sides in multiples of ``factor`` with ``min_pixels <= h * w <= max_pixels``."""
    return smart_resize(height, width, factor, min_pixels or MIN_IMAGE_TOKENS * factor * factor,
                        max_pixels or MAX_IMAGE_TOKENS * factor * factor)


def _as_chw(image) -> torch.Tensor:
    """A uint8 ``[3, H, W]`` tensor (what the nodes and the CLI hand over) or a PIL image -> uint8 ``[3, H, W]``."""
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise InputError("image", f"expected a [3, H, W] image, got shape {tuple(image.shape)}.",
                             "Connect an IMAGE output (e.g. Load Image).")
        return image if image.dtype == torch.uint8 else image.clamp(0, 255).round().to(torch.uint8)
    import numpy as np

    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)


def resize_chw(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 ``[3, H, W]`` -> uint8 ``[3, h, w]`` (bicubic, antialiased, as the processor resizes)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    x = image.detach().to("cpu", torch.float32).unsqueeze(0)
    x = torch.nn.functional.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)
    return x.clamp_(0.0, 255.0).round_().to(torch.uint8)[0]


def _encode(image: torch.Tensor, fmt: str) -> str:
    import numpy as np
    from PIL import Image

    pil = Image.fromarray(np.ascontiguousarray(image.numpy().transpose(1, 2, 0)), "RGB")
    buf = io.BytesIO()
    if fmt == "PNG":
        pil.save(buf, format="PNG", compress_level=1)  # lossless, fast
    else:
        pil.save(buf, format="JPEG", quality=95)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def image_part(image, min_pixels: int | None, max_pixels: int | None) -> tuple[dict, int]:
    """One image as an ``image_url`` content part (PNG data URL at its model size) and its visual tokens."""
    chw = _as_chw(image)
    h, w = smart_size(int(chw.shape[1]), int(chw.shape[2]), min_pixels, max_pixels)
    url = "data:image/png;base64," + _encode(resize_chw(chw, (h, w)), "PNG")
    return {"type": "image_url", "image_url": {"url": url}}, (h // TOKEN_SIDE) * (w // TOKEN_SIDE)


def video_part(item: dict) -> tuple[dict, dict, int]:
    """A prepared video item -> a ``video_url`` part (JPEG frame list), its ``media_io_kwargs`` and its tokens."""
    frames = item["video"]
    meta = item.get("video_metadata")
    if meta is None:
        raise InputError("video", "has no frame rate metadata.", "Give the video through the video and video_fps "
                         "inputs of Qwen3-VL Generate.")
    url = "data:video/jpeg;base64," + ",".join(_encode(frame, "JPEG") for frame in frames)
    indices = [int(i) for i in meta["frames_indices"]]
    # a 1-frame clip is sent as that frame twice (the temporal patch is 2); vLLM wants total >= frames sent
    io_kwargs = {"fps": float(meta["fps"]), "frames_indices": indices,
                 "total_num_frames": max(int(meta["total_num_frames"]), len(indices)),
                 "duration": float(meta["duration"]), "do_sample_frames": False}
    n, _, h, w = (int(s) for s in frames.shape)
    return {"type": "video_url", "video_url": {"url": url}}, io_kwargs, (n // 2) * (h // TOKEN_SIDE) * (w // TOKEN_SIDE)


def to_openai(conversation: list[dict], min_pixels: int | None = None,
              max_pixels: int | None = None) -> OpenAIRequest:
    """A chat-template conversation (system/user/assistant, images, at most one video) -> an OpenAI request."""
    request = OpenAIRequest(messages=[])
    for message in conversation:
        content = message["content"]
        if isinstance(content, str):
            request.messages.append({"role": message["role"], "content": content})
            continue
        parts = []
        for item in content:
            kind = item.get("type")
            if kind == "text" or ("text" in item and kind is None):
                parts.append({"type": "text", "text": item["text"]})
            elif kind == "image" or "image" in item:
                part, tokens = image_part(item["image"], min_pixels, max_pixels)
                parts.append(part)
                request.visual_tokens.append(tokens)
            elif kind == "video" or "video" in item:
                if request.media_io_kwargs is not None:
                    raise InputError("video", "a served model takes one video per conversation here (its frame "
                                     "times go with the request, not with each video).",
                                     "Start a new chat for the second video, or use a local model.")
                part, request.media_io_kwargs, tokens = video_part(item)
                parts.append(part)
                request.video_tokens.append(tokens)
        if all(p["type"] == "text" for p in parts):  # plain text: the form every server accepts
            request.messages.append({"role": message["role"], "content": "".join(p["text"] for p in parts)})
        else:
            request.messages.append({"role": message["role"], "content": parts})
    return request
