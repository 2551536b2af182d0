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


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen's ``smart_resize``: ``(height, width)`` in multiples of ``factor`` with ``min_pixels <= h * w <=
    max_pixels`` (Qwen2.5-VL: factor 28; Qwen3-VL: 32), as the Qwen processors resize images."""
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return int(h_bar), int(w_bar)


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
    check_pixels_readable(value, input_name)
    return value


def check_pixels_readable(value: torch.Tensor, input_name: str) -> None:
    """Refuse tensors whose pixels cannot be read: on the meta device (shape only, no data) or sparse."""
    if value.device.type == "meta":
        raise InputError(input_name, "is a tensor on the 'meta' device: it has a shape but no pixel data.",
                         "Connect a node that outputs real image data (a loaded image or video).")
    if value.layout != torch.strided:
        raise InputError(input_name, f"is a {value.layout} tensor, not a plain (dense) image.",
                         "Convert it to a dense tensor (tensor.to_dense()) or connect a normal IMAGE output.")


def integer_pixels_to_uint8(image: torch.Tensor, input_name: str = "image") -> torch.Tensor:
    """An integer IMAGE (any int dtype, e.g. int64 from numpy) holds 0..255 values: return it as uint8.

    uint8 passes as is. Other integer tensors are read as 0..255 (never scaled again by 255); values outside
    0..255 (e.g. 16-bit 0..65535) and bool tensors are refused: their scale cannot be guessed.
    """
    if image.dtype == torch.uint8 or image.is_floating_point():
        return image
    if image.dtype == torch.bool or image.is_complex():
        raise InputError(input_name, f"is a {image.dtype} tensor, not image pixels.",
                         "Connect an IMAGE (float 0..1, or integers 0..255).")
    lo, hi = (int(v) for v in torch.aminmax(image))
    if lo < 0 or hi > 255:
        raise InputError(input_name, f"is an integer ({image.dtype}) tensor with values {lo}..{hi}; integer "
                         "pixels must be 0..255.", "Convert it to float 0..1 (ComfyUI's IMAGE format) first, "
                         "e.g. divide 16-bit pixels by 65535.")
    return image.to(torch.uint8)


def as_float01(image: torch.Tensor) -> torch.Tensor:
    """A checked IMAGE batch as float 0..1 (uint8 0..255 divided by 255 once; float returned as is)."""
    return image if image.is_floating_point() else image.to(torch.float32).div_(255.0)


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
    image = integer_pixels_to_uint8(image, input_name)
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


FITS = ("pad", "crop", "stretch")


def fit_image(image: torch.Tensor, height: int, width: int, fit: str) -> torch.Tensor:
    """float ``[B, H, W, 3]`` 0..1 -> ``[B, height, width, 3]``.

    pad: the whole picture scaled to fit inside, centred on white (nothing cut, nothing squeezed); crop: scaled to
    cover, the centre cut out (what core ImageBatch / Batch Images do); stretch: scaled to the size, aspect lost.
    Bilinear with antialiasing (a downscale averages, it does not skip pixels).
    """
    if fit not in FITS:
        raise InputError("fit", f"{fit!r} is not one of {', '.join(FITS)}.", "Pick pad, crop or stretch.")
    b, h, w, c = image.shape
    if (h, w) == (height, width):
        return image
    chw = image.permute(0, 3, 1, 2)
    if fit == "stretch":
        sh, sw = height, width
    else:
        scale = (min if fit == "pad" else max)(height / h, width / w)
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        if fit == "pad":
            sh, sw = min(sh, height), min(sw, width)
        else:
            sh, sw = max(sh, height), max(sw, width)
    scaled = torch.nn.functional.interpolate(chw.float(), size=(sh, sw), mode="bilinear", align_corners=False,
                                             antialias=True).clamp_(0.0, 1.0)
    if fit == "pad":
        out = torch.ones((b, c, height, width), dtype=scaled.dtype, device=scaled.device)
        top, left = (height - sh) // 2, (width - sw) // 2
        out[:, :, top:top + sh, left:left + sw] = scaled
        scaled = out
    elif fit == "crop":
        top, left = (sh - height) // 2, (sw - width) // 2
        scaled = scaled[:, :, top:top + height, left:left + width]
    return scaled.permute(0, 2, 3, 1).contiguous().to(image.dtype)


def join_images(named: list[tuple[str, object]], fit: str) -> torch.Tensor:
    """IMAGE inputs (each one picture or a batch) -> one float ``[N, H, W, 3]`` batch in input order, at the size of
    the first input's pictures, every later picture fitted by :func:`fit_image`. ``named``: (input name, IMAGE)."""
    checked = [as_float01(check_image_batch(value, name)) for name, value in named if value is not None]
    if not checked:
        raise InputError(named[0][0] if named else "image_1", "no image given.", "Connect an IMAGE to image_1.")
    height, width = int(checked[0].shape[1]), int(checked[0].shape[2])
    return torch.cat([fit_image(batch, height, width, fit) for batch in checked], dim=0)
