"""Video from frame batches (true timestamps, even sampling, per-frame budget) and multi-turn chats.

Tiny real Qwen3-VL (random weights): assertions on shapes, timestamps, grids and structure, never on wording.
"""

from __future__ import annotations

import copy
import re

import pytest
import torch

from qwen3vl_pack.nodes.generate import Qwen3VLGenerate
from qwen3vl_pack.nodes.option_nodes import Qwen3VLVideoOptions
from qwen3vl_pack.tests.spies import spy_prepare_inputs
from qwen3vl_pack.utils.errors import InputError
from qwen3vl_pack.utils.messages import Chat, build_messages, check_chat
from qwen3vl_pack.utils.video import VideoSampling, frame_size, prepare_video, sample_indices, video_sampling

STAMP = re.compile(r"<(\d+\.\d) seconds>")
VIDEO_DEFAULTS = dict(sample_fps=2.0, max_frames=64, max_video_frame_tokens=256)


def _frames(n: int, h: int = 64, w: int = 96, seed: int = 0) -> torch.Tensor:
    """A ComfyUI frame batch: float32 [T, H, W, 3] in 0..1."""
    return torch.rand(n, h, w, 3, generator=torch.Generator().manual_seed(seed))


def _stamps(info: str) -> list[float]:
    return [float(s) for s in STAMP.findall(info)]


def _run(bundle, prompt="What happens?", **kwargs):
    """Generate; sample_fps / max_frames / max_video_frame_tokens go through a Qwen3-VL Video Options node."""
    video = {k: kwargs.pop(k) for k in ("sample_fps", "max_frames", "max_video_frame_tokens") if k in kwargs}
    if video:
        kwargs["video_options"] = Qwen3VLVideoOptions().options(**{**VIDEO_DEFAULTS, **video})[0]
    return Qwen3VLGenerate().generate(bundle, prompt, "Greedy", kwargs.pop("max_new_tokens", 6), **kwargs)


# ---- pure sampling -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("total,fps,sample,cap,expected", [
    (60, 30.0, 2.0, 64, [0, 20, 39, 59]),            # 2 s at 2 fps: 4 frames, first to last
    (300, 30.0, 2.0, 8, [0, 43, 85, 128, 171, 214, 256, 299]),  # capped: spread over all 10 s
    (1, 30.0, 2.0, 64, [0, 0]),                      # one frame is repeated (temporal patch 2)
    (5, 30.0, 2.0, 64, [0, 1, 3, 4]),                # short clip: at least 4 frames, first to last
    (7, 1.0, 1.0, 3, [0, 3, 6, 6]),                  # odd cap: last index repeated to pair up
])
def test_sample_indices_cover_the_whole_clip(total, fps, sample, cap, expected):
    assert sample_indices(total, fps, sample, cap) == expected


def test_frame_size_keeps_inside_the_budget():
    h, w = frame_size(1080, 1920, 256)
    assert (h % 32, w % 32) == (0, 0) and h * w <= 256 * 32 * 32 and w > h
    assert frame_size(64, 96, 256) == (64, 96)  # small frames are not upscaled
    assert frame_size(10, 20, 256) == (32, 64)
    with pytest.raises(InputError, match="^video: "):
        frame_size(4, 4000, 256)


def test_prepare_video_touches_only_sampled_frames():
    frames = _frames(300, 8, 8)
    frames[5] = float("nan")  # not among the 8 sampled frames: never read
    item = prepare_video(frames, VideoSampling(30.0, 2.0, 8, 64))
    assert item["video"].dtype == torch.uint8 and item["video"].shape == (8, 3, 32, 32)
    assert item["video_metadata"]["frames_indices"] == [0, 43, 85, 128, 171, 214, 256, 299]
    frames[43] = float("nan")  # a sampled frame is checked
    with pytest.raises(InputError, match="^video: contains NaN"):
        prepare_video(frames, VideoSampling(30.0, 2.0, 8, 64))


def test_prepare_video_keeps_pixels_when_no_resize_is_needed():
    frames = _frames(4, 64, 64)
    item = prepare_video(frames, VideoSampling(2.0, 2.0, 4, 256))
    expected = frames.mul(255).round().to(torch.uint8).permute(0, 3, 1, 2)
    assert torch.equal(item["video"], expected)


# ---- video through the node ----------------------------------------------------------------------------------


def test_two_second_clip_timestamps_span_the_clip(dense, monkeypatch):
    calls = spy_prepare_inputs(monkeypatch)
    text, _, info, chat = _run(dense, video=_frames(60), video_fps=30.0, sample_fps=2.0)
    stamps = _stamps(info)
    # indices [0, 20, 39, 59] at 30 fps, averaged per pair of frames (the processor's rule)
    assert stamps == [round((0 + 20) / 2 / 30, 1), round((39 + 59) / 2 / 30, 1)]
    assert stamps[0] <= 0.5 and 1.5 <= stamps[-1] < 2.0
    assert calls[0]["video_grid_thw"][0, 0].item() == 2
    assert "video: 4 of 60 frames at 30 fps" in info
    assert isinstance(text, str) and isinstance(chat, Chat)


def test_long_clip_with_few_frames_reaches_the_end(dense, monkeypatch):
    calls = spy_prepare_inputs(monkeypatch)
    _, _, info, _ = _run(dense, video=_frames(300, 32, 32), video_fps=30.0, sample_fps=2.0, max_frames=8)
    stamps = _stamps(info)
    assert 1 <= len(stamps) <= 4 and stamps[-1] > 7.0
    assert stamps == sorted(stamps)
    assert calls[0]["video_grid_thw"][0, 0].item() == len(stamps)


def test_non_integer_fps_gives_true_times(dense):
    _, _, info, _ = _run(dense, video=_frames(300, 32, 32), video_fps=29.97, sample_fps=1.0, max_frames=64)
    indices = sample_indices(300, 29.97, 1.0, 64)
    expected = [f"{(a + b) / 2 / 29.97:.1f}" for a, b in zip(indices[::2], indices[1::2], strict=True)]
    assert STAMP.findall(info) == expected and len(expected) == 5 and float(expected[-1]) > 9.0


def test_single_frame_video_runs(dense, monkeypatch):
    calls = spy_prepare_inputs(monkeypatch)
    text, _, info, _ = _run(dense, video=_frames(1), video_fps=25.0)
    assert _stamps(info) == [0.0]
    assert calls[0]["video_grid_thw"].tolist() == [[1, 4, 6]]
    assert isinstance(text, str)
    _, _, info3d, _ = _run(dense, video=_frames(1)[0], video_fps=25.0)  # a bare [H, W, C] frame too
    assert _stamps(info3d) == [0.0]


def test_full_hd_frames_are_cut_to_the_budget(dense, monkeypatch):
    calls = spy_prepare_inputs(monkeypatch)
    frames = _frames(4, 1080, 1920)
    _run(dense, video=frames, video_fps=2.0, max_video_frame_tokens=64)
    _run(dense, video=frames, video_fps=2.0, max_video_frame_tokens=256)
    (t1, h1, w1), (t2, h2, w2) = (c["video_grid_thw"][0].tolist() for c in calls)
    merge = 4  # 2x2 patches of 16 px make one token of 32x32
    assert t1 == t2 == 2
    assert h1 * w1 // merge <= 64 < h2 * w2 // merge <= 256
    assert w1 > h1 and w2 > h2  # aspect ratio kept (landscape)
    video_id = dense.model.config.video_token_id
    assert int((calls[0]["input_ids"] == video_id).sum()) == t1 * h1 * w1 // merge


def test_video_and_two_images_in_one_turn(dense, monkeypatch):
    calls = spy_prepare_inputs(monkeypatch)
    images = _frames(2, 64, 64, seed=3)
    _, _, info, chat = _run(dense, "Compare.", image=images, video=_frames(8), video_fps=4.0)
    inputs = calls[0]
    assert inputs["image_grid_thw"].shape == (2, 3) and inputs["video_grid_thw"].shape == (1, 3)
    assert info.count("<|image_pad|>×") == 2 and len(_stamps(info)) == 2
    prompt = info.split("--- rendered prompt ---")[1]
    assert prompt.index("<|image_pad|>") < prompt.index("seconds>") < prompt.index("Compare.")
    kinds = [item["type"] for item in chat.messages[0]["content"]]
    assert kinds == ["image", "image", "video", "text"]


# ---- conversations --------------------------------------------------------------------------------------------


def _snapshot(chat: Chat):
    return [(m["role"], [(k, id(v) if isinstance(v, torch.Tensor) else copy.deepcopy(v))
                         for item in m["content"] for k, v in sorted(item.items())]) for m in chat.messages]


def test_continued_chat_keeps_question_answer_images_and_system(dense, monkeypatch):
    calls = spy_prepare_inputs(monkeypatch)
    image = _frames(1, 64, 96, seed=7)
    text1, _, info1, chat1 = _run(dense, "First question?", image=image, system_prompt="Be brief.")
    before = _snapshot(chat1)
    text2, _, info2, chat2 = _run(dense, "Follow-up?", chat=chat1, system_prompt="ignored")
    assert _snapshot(chat1) == before and len(chat1.messages) == 3  # the input chat is unchanged
    assert [m["role"] for m in chat2.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert chat2.messages[:3] == chat1.messages
    assert chat2.messages[2]["content"][0]["text"] == text1
    assert chat2.messages[4]["content"][0]["text"] == text2 and chat2.turns == 2
    assert calls[1]["image_grid_thw"].tolist() == calls[0]["image_grid_thw"].tolist()  # earlier image re-sent
    prompt2 = info2.split("--- rendered prompt ---")[1]
    assert "<|im_start|>system\nBe brief.<|im_end|>" in prompt2 and "ignored" not in prompt2
    assert prompt2.index("First question?") < prompt2.index("<|im_start|>assistant\n") < prompt2.index("Follow-up?")
    assert prompt2.count("<|image_pad|>×") == 1
    first_turn = info1.split("--- rendered prompt ---")[1].rsplit("<|im_start|>assistant\n", 1)[0]
    assert prompt2.startswith(first_turn)


def test_chat_about_a_video_keeps_the_timestamps(dense):
    _, _, info1, chat1 = _run(dense, video=_frames(60), video_fps=30.0)
    _, _, info2, chat2 = _run(dense, "And at the end?", chat=chat1)
    assert _stamps(info2) == _stamps(info1) and len(_stamps(info2)) == 2
    assert chat2.messages[0]["content"][0] is chat1.messages[0]["content"][0]


def test_greedy_runs_are_reproducible(dense):
    kwargs = dict(image=_frames(1, 64, 64, seed=1), video=_frames(60), video_fps=30.0, max_new_tokens=12)
    a = _run(dense, **kwargs)
    b = _run(dense, **kwargs)
    assert a[0] == b[0] and _stamps(a[2]) == _stamps(b[2])
    follow_a = _run(dense, "Again?", chat=a[3], max_new_tokens=12)
    follow_b = _run(dense, "Again?", chat=b[3], max_new_tokens=12)
    assert follow_a[0] == follow_b[0]


def test_build_messages_never_mutates_the_chat():
    chat = Chat(({"role": "user", "content": [{"type": "text", "text": "q"}]},
                 {"role": "assistant", "content": [{"type": "text", "text": "a"}]}))
    messages = build_messages("next", chat=chat)
    messages.append({"role": "user", "content": []})
    assert len(chat.messages) == 2 and len(messages) == 4


# ---- bad input ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,name", [
    (dict(video=torch.zeros(0, 32, 32, 3)), "video"),
    (dict(video=torch.zeros(0, 32, 32, 3), video_fps=30.0), "video"),
    (dict(video=_frames(4), video_fps=0.0), "video_fps"),
    (dict(video=_frames(4), video_fps=-25.0), "video_fps"),
    (dict(video=_frames(4), video_fps=30.0, max_frames=0), "max_frames"),
    (dict(video=_frames(4), video_fps=30.0, sample_fps=0.0), "sample_fps"),
    (dict(video="clip.mp4", video_fps=30.0), "video"),
    (dict(chat="hello"), "chat"),
    (dict(chat={"messages": []}), "chat"),
    (dict(chat=Chat(())), "chat"),
    (dict(chat=Chat(({"role": "robot", "content": []},))), "chat"),
])
def test_bad_video_and_chat_inputs_name_the_input(dense, kwargs, name):
    with pytest.raises(InputError) as err:
        _run(dense, **kwargs)
    assert err.value.input_name == name and str(err.value).startswith(name + ":")
    text, _, _, chat = _run(dense, "ok")
    assert isinstance(text, str) and isinstance(chat, Chat)


def test_checks_without_a_model():
    with pytest.raises(InputError, match="^max_video_frame_tokens: "):
        video_sampling(30.0, 2.0, 8, 0)
    with pytest.raises(InputError, match="^chat: "):
        check_chat([{"role": "user", "content": "hi"}])
    assert video_sampling(30, 2, 8, 64) == VideoSampling(30.0, 2.0, 8, 64)
