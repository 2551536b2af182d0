"""ComfyUI IMAGE tensors -> what the Qwen3-VL processor takes.

ComfyUI IMAGE is float32 ``[B, H, W, C]`` in 0..1. The processor wants uint8 pixels: we convert the
whole batch with one vectorised op (no float64, no per-pixel Python, no PIL round trip) and hand
over channel-first uint8 tensors, which are exactly what the processor makes of a PIL image.
"""

from __future__ import annotations

import logging
import math

import torch

from .errors import InputError

logger = logging.getLogger(__name__)
MAX_ASPECT = 200  # Qwen's image/video processors refuse anything more elongated than 200:1


def check_aspect(height: int, width: int, input_name: str = "image", what: str = "image") -> None:
    """Refuse sizes the processor cannot take (aspect ratio over 200:1) with an error naming the input."""
    if max(height, width) > MAX_ASPECT * max(1, min(height, width)):
        raise InputError(input_name, f"a {width}x{height} {what} is too elongated for Qwen3-VL (aspect ratio "
                         f"over {MAX_ASPECT}:1).", "Crop or pad it closer to a normal aspect ratio first.")


def as_batch(value, input_name: str, kind: str, layout: str, advice: str) -> torch.Tensor:
    """A ComfyUI IMAGE-like input as a 4-D tensor (``[H, W, C]`` becomes a batch of one); shape only."""
    if not isinstance(value, torch.Tensor):
        raise InputError(input_name, f"expected {kind} tensor, got {type(value).__name__}.", advice)
    if value.ndim == 3:
        value = value.unsqueeze(0)
    if value.ndim != 4:
        raise InputError(input_name, f"expected {kind} of shape {layout}, got {tuple(value.shape)}.", advice)
    return value


def check_image_batch(image, input_name: str = "image") -> torch.Tensor:
    """Validate a ComfyUI IMAGE and return it as float ``[B, H, W, 3]``.

    1 channel -> replicated to RGB; 2 channels (grey + alpha) and 4 channels (RGBA) -> composited on
    white (:func:`composite_on_white`). NaN/inf is an error; values outside 0..1 are clamped with a warning.
    """
    image = as_batch(image, input_name, "an IMAGE", "[B, H, W, C]", "Connect an IMAGE output (e.g. Load Image) "
                     "to this input.")
    b, h, w, c = image.shape
    if b == 0 or h == 0 or w == 0:
        raise InputError(input_name, f"the image batch is empty (shape {tuple(image.shape)}).",
                         "Check the node that produces the images: it returned no pixels.")
    if c not in (1, 2, 3, 4):
        raise InputError(input_name, f"{c} channels are not supported (shape {tuple(image.shape)}).",
                         "Use an IMAGE with 1 (grey), 3 (RGB) or 4 (RGBA) channels.")
    if image.is_floating_point():
        lo, hi = (float(v) for v in torch.aminmax(image))  # one pass; NaN and inf show up here
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise InputError(input_name, "contains NaN or infinite values.",
                             "Fix or replace the node that produced this image.")
        if lo < 0.0 or hi > 1.0:
            logger.warning("%s: values span %.3f..%.3f, outside 0..1; clamping.", input_name, lo, hi)
            image = image.clamp(0.0, 1.0)
    if c in (2, 4):
        image = composite_on_white(image[..., :-1], image[..., -1:])
    if image.shape[-1] == 1:
        image = image.expand(-1, -1, -1, 3)
    return image


def composite_on_white(color: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``color`` ``[..., C]`` over a white background through ``alpha`` ``[..., 1]`` (0 = transparent).

    What qwen-vl-utils (``to_rgb``) and the pack's folder loader do with transparent images: the model sees
    the picture as it is shown, not whatever colour hides under alpha 0. Float inputs are in 0..1, uint8
    inputs in 0..255 (rounded to the nearest value); both agree with PIL's paste-with-mask within 1/255.
    """
    if color.dtype == torch.uint8:
        c, a = color.to(torch.int32), alpha.to(torch.int32)
        return ((c * a + 255 * (255 - a) + 127) // 255).to(torch.uint8)
    return color * alpha + (1.0 - alpha)


def to_uint8_chw(image: torch.Tensor, input_name: str = "image") -> torch.Tensor:
    """float ``[B, H, W, 3]`` 0..1 (already checked) -> uint8 ``[B, 3, H, W]`` on the CPU, for the processor."""
    check_aspect(int(image.shape[1]), int(image.shape[2]), input_name)
    if image.dtype == torch.uint8:
        out = image
    else:
        # values are in 0..1 (checked), so x*255+0.5 truncated is round-half-up into 0..255
        out = image.detach().to("cpu", torch.float32).mul(255.0).add_(0.5).to(torch.uint8)
    return out.permute(0, 3, 1, 2).contiguous()


def image_batch_to_list(image, input_name: str = "image") -> list[torch.Tensor]:
    """A ComfyUI IMAGE batch -> list of uint8 ``[3, H, W]`` tensors, in batch order."""
    return list(to_uint8_chw(check_image_batch(image, input_name), input_name).unbind(0))


def pil_to_chw(pil_image, input_name: str = "image") -> torch.Tensor:
    """A PIL image -> uint8 ``[3, H, W]`` (RGB)."""
    import numpy as np

    check_aspect(pil_image.height, pil_image.width, input_name)
    arr = np.asarray(pil_image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()
