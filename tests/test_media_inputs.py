"""Media inputs as Qwen's own tools prepare them: alpha on white, at least 4 video frames (qwen-vl-utils 0.0.14)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from qwen_vl_utils.vision_process import FPS_MIN_FRAMES, smart_nframes, to_rgb

from qwen3vl_pack.utils import images, video
from qwen3vl_pack.utils.images import check_image_batch, image_batch_to_list
from qwen3vl_pack.utils.video import sample_indices

# ---- images with alpha -----------------------------------------------------------------------------------------


def _rgba(seed: int = 0, h: int = 16, w: int = 24) -> torch.Tensor:
    """A ComfyUI IMAGE with alpha: float [1, H, W, 4]; the hidden colour under alpha 0 is vivid on purpose."""
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(1, h, w, 4, generator=g)
    img[0, :, : w // 3, 3] = 0.0  # fully transparent third
    img[0, :, w // 3: 2 * w // 3, 3] = 1.0  # opaque third; the rest semi-transparent
    return img


def test_transparent_pixels_become_white_not_their_hidden_colour():
    img = _rgba()
    out = check_image_batch(img)
    assert out.shape == (1, 16, 24, 3)
    assert torch.equal(out[0, :, :8], torch.ones(16, 8, 3))  # alpha 0 -> white
    assert torch.equal(out[0, :, 8:16], img[0, :, 8:16, :3])  # alpha 1 -> the colour itself


def test_alpha_matches_qwen_vl_utils_to_rgb():
    img = _rgba(seed=3)
    ours = image_batch_to_list(img)[0].permute(1, 2, 0).numpy().astype(int)
    pil = Image.fromarray((img[0].numpy() * 255 + 0.5).astype(np.uint8), mode="RGBA")
    theirs = np.asarray(to_rgb(pil)).astype(int)
    assert np.abs(ours - theirs).max() <= 1  # the same picture, up to rounding


def test_grey_with_alpha_and_uint8_rgba():
    la = torch.tensor([[[[0.2, 0.0], [0.2, 1.0], [0.2, 0.5]]]])  # grey + alpha, [1, 1, 3, 2]
    assert torch.allclose(check_image_batch(la)[0, 0], torch.tensor([[1.0] * 3, [0.2] * 3, [0.6] * 3]))
    rgba = torch.tensor([[[[10, 20, 30, 0], [10, 20, 30, 255], [0, 0, 0, 128]]]], dtype=torch.uint8)
    out = images.composite_on_white(rgba[..., :3], rgba[..., 3:])
    assert out.dtype == torch.uint8 and out[0, 0].tolist() == [[255] * 3, [10, 20, 30], [127] * 3]


# ---- video: at least 4 frames ----------------------------------------------------------------------------------


def test_min_frames_is_qwen_vl_utils_fps_min_frames():
    assert video.MIN_FRAMES == FPS_MIN_FRAMES == 4


@pytest.mark.parametrize("total", [4, 5, 6, 7, 8, 12, 24, 47])
@pytest.mark.parametrize("video_fps", [24.0, 30.0, 60.0])
def test_short_clips_get_four_frames_like_smart_nframes(total, video_fps):
    """A clip under 2 s at 2 fps: qwen-vl-utils takes FPS_MIN_FRAMES frames, so two temporal patches."""
    assert total / video_fps * 2.0 < FPS_MIN_FRAMES  # short enough that the minimum applies
    indices = sample_indices(total, video_fps, 2.0, 64)
    expected = smart_nframes({"fps": 2.0}, total_frames=total, video_fps=video_fps)
    assert len(indices) == len(set(indices)) == expected == 4
    assert indices[0] == 0 and indices[-1] == total - 1 and indices == sorted(indices)


@pytest.mark.parametrize("total,video_fps,sample_fps", [
    (60, 30.0, 2.0), (61, 30.0, 2.0), (100, 24.0, 2.0), (300, 29.97, 1.0), (250, 25.0, 2.0), (1000, 30.0, 2.0),
    (90, 30.0, 1.5), (4, 1.0, 2.0),
])
def test_longer_clips_within_one_pair_of_smart_nframes(total, video_fps, sample_fps):
    """Above the minimum our count rounds to the nearest even number, qwen-vl-utils floors: at most 2 apart."""
    ours = len(set(sample_indices(total, video_fps, sample_fps, 768)))
    theirs = smart_nframes({"fps": sample_fps}, total_frames=total, video_fps=video_fps)
    assert ours >= FPS_MIN_FRAMES and abs(ours - theirs) <= 2


@pytest.mark.parametrize("total,cap,expected", [
    (1, 64, [0, 0]),         # fewer frames than the minimum: all of them, paired up
    (2, 64, [0, 1]),
    (3, 64, [0, 1, 2, 2]),
    (100, 2, [0, 99]),       # the user's max_frames wins over the minimum, as in qwen-vl-utils
])
def test_minimum_gives_way_to_the_clip_and_to_max_frames(total, cap, expected):
    assert sample_indices(total, 30.0, 2.0, cap) == expected
