"""3D boxes (``bbox_3d``) -> projected corners, 2D extents and a wireframe preview.

Qwen3-VL ``cookbooks/3d_grounding.ipynb`` draws a box like this, and so do we:

- camera intrinsics from a field of view when the real ones are unknown (its ``generate_camera_params``,
  fov 60 by default): ``fx = w / (2 tan(fov / 2))``, ``fy = h / (2 tan(fov / 2))``, ``cx = w / 2``,
  ``cy = h / 2`` (x right, y down, z forward, metres);
- the three rotation values times 180 are degrees (so the value is in units of pi radians), and its
  ``convert_3dbbox`` applies them in the order written as rotations about x, then y, then z (it names them
  pitch, yaw, roll although the prompt's format lists roll, pitch, yaw);
- the eight corners ``(+-x_size/2, +-y_size/2, +-z_size/2)`` rotated and moved to the centre, projected
  ``u = fx X / Z + cx``, ``v = fy Y / Z + cy``; a box is drawn only when all eight are in front of the
  camera (``Z > 0``), with the notebook's twelve edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .errors import InputError
from .grounding_render import COLORS
from .task_parsers import Box3D

DEFAULT_FOV = 60.0
CORNERS = ((1, 1, 1), (1, 1, -1), (1, -1, 1), (1, -1, -1), (-1, 1, 1), (-1, 1, -1), (-1, -1, 1), (-1, -1, -1))
EDGES = ((0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7))


@dataclass(frozen=True)
class Camera:
    fx: float
    fy: float
    cx: float
    cy: float


def camera_from_fov(width: int, height: int, fov: float = DEFAULT_FOV) -> Camera:
    """The cookbook's pseudo intrinsics for a ``width`` x ``height`` image and a field of view in degrees."""
    if not (isinstance(fov, (int, float)) and 1.0 <= fov <= 179.0):
        raise InputError("fov", f"must be a field of view between 1 and 179 degrees, got {fov!r}.",
                         "Use the camera's horizontal field of view, or 60 (Qwen's cookbook default).")
    t = 2.0 * math.tan(math.radians(fov) / 2.0)
    return Camera(width / t, height / t, width / 2.0, height / 2.0)


def _rotate(point: tuple[float, float, float], a: float, b: float, c: float) -> tuple[float, float, float]:
    """About x by ``a``, then y by ``b``, then z by ``c`` (radians), as the cookbook's ``rotate_xyz``."""
    x0, y0, z0 = point
    y1, z1 = y0 * math.cos(a) - z0 * math.sin(a), y0 * math.sin(a) + z0 * math.cos(a)
    x2, z2 = x0 * math.cos(b) + z1 * math.sin(b), -x0 * math.sin(b) + z1 * math.cos(b)
    return x2 * math.cos(c) - y1 * math.sin(c), x2 * math.sin(c) + y1 * math.cos(c), z2


def project(box: Box3D, camera: Camera) -> list[tuple[float, float]] | None:
    """The eight projected corners in pixels (cookbook order), or None when one is not in front of the camera."""
    angles = [v * math.pi for v in box.rotation]  # value * 180 degrees
    half = [s / 2.0 for s in box.size]
    out = []
    for sx, sy, sz in CORNERS:
        x, y, z = _rotate((sx * half[0], sy * half[1], sz * half[2]), *angles)
        x, y, z = x + box.center[0], y + box.center[1], z + box.center[2]
        if z <= 0:
            return None
        out.append((camera.fx * x / z + camera.cx, camera.fy * y / z + camera.cy))
    return out


def extent(corners: list[tuple[float, float]] | None, width: int, height: int) -> tuple[float, ...] | None:
    """The 2D box around projected corners, clamped to the image; None if nothing of it is inside."""
    if corners is None:
        return None
    xs = sorted(min(max(u, 0.0), float(width)) for u, _ in corners)
    ys = sorted(min(max(v, 0.0), float(height)) for _, v in corners)
    box = (round(xs[0], 2), round(ys[0], 2), round(xs[-1], 2), round(ys[-1], 2))
    return box if box[2] > box[0] and box[3] > box[1] else None


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1 or no FreeType
        return ImageFont.load_default()


def _label(draw: ImageDraw.ImageDraw, anchor: tuple[float, float], caption: str, color, font) -> None:
    left, top, right, bottom = draw.textbbox(anchor, caption, font=font)
    draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=color)
    draw.text(anchor, caption, fill=(0, 0, 0), font=font)


def draw_overlays(image: torch.Tensor, wires: list[list[tuple[int, str, list | None]]],
                  captions: list[str] | None = None) -> torch.Tensor:
    """The batch ``[B, H, W, 3]`` with wireframes ``(index, label, corners)`` and an optional caption per
    image drawn; same size, and pixels that no drawing touches keep their exact values."""
    b, h, w, _ = image.shape
    line = max(2, round(min(h, w) / 250))
    font = _font(max(10, round(min(h, w) / 40)))
    frames = (image.detach().cpu().float().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    out = []
    for i in range(b):
        pil = Image.fromarray(frames[i])
        draw = ImageDraw.Draw(pil)
        for idx, label, corners in wires[i] if i < len(wires) else ():
            if corners is None:
                continue
            color = COLORS[idx % len(COLORS)]
            for s, e in EDGES:
                draw.line((corners[s], corners[e]), fill=color, width=line)
            _label(draw, min(corners, key=lambda p: p[1]), f"{idx}: {label}" if label else str(idx), color, font)
        if captions and i < len(captions) and captions[i]:
            _label(draw, (line + 2, line + 2), captions[i][:120], COLORS[i % len(COLORS)], font)
        drawn = np.asarray(pil)
        changed = torch.from_numpy((drawn != frames[i]).any(axis=-1))
        frame = image[i].detach().cpu().float().clone()
        frame[changed] = torch.from_numpy(drawn[changed.numpy()].astype(np.float32) / 255.0)
        out.append(frame)
    return torch.stack(out) if out else image.detach().cpu().float().clone()
