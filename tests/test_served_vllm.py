"""The served-engine tier: every node through a REAL vLLM (CPU build) serving a tiny random Qwen3-VL.

Run by ``.ci/run`` through ``scripts/with_vllm.sh``, which starts the server and sets QWEN3VL_VLLM_URL. The
local path gets the same tiny model built here with this process's transformers (same tokenizer and processor),
for comparisons. Without a server these tests are skipped, except under CI, where that is a failure.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import torch

from qwen3vl_pack.loaders.backends import served
from qwen3vl_pack.loaders.backends.served import connect
from qwen3vl_pack.loaders.cache import load_model
from qwen3vl_pack.nodes.caption import Qwen3VLBatchCaption
from qwen3vl_pack.nodes.generate import Qwen3VLGenerate
from qwen3vl_pack.nodes.grounding import Qwen3VLGrounding
from qwen3vl_pack.nodes.server import Qwen3VLServerModel
from qwen3vl_pack.utils.errors import InputError
from qwen3vl_pack.utils.messages import build_messages
from qwen3vl_pack.utils.node_options import check_sampling, check_video_options
from qwen3vl_pack.utils.openai_messages import to_openai
from qwen3vl_pack.utils.video import prepare_video, video_sampling

URL = os.environ.get("QWEN3VL_VLLM_URL", "")
ROOT = Path(__file__).resolve().parents[1]
STAMP = re.compile(r"<([\d.]+) seconds>")
# An outer <|vision_start|> ... <|vision_end|> pair around all the per-frame blocks of a video: vLLM 0.32 and
# transformers 5.19-5.24 write it, transformers 4.57 and 5.25 do not. Found in the rendered prompts themselves.
OUTER_VIDEO_WRAPPER = re.compile(r"<\|vision_start\|>(?=<[\d.]+ seconds>)|(?<=<\|vision_end\|>)<\|vision_end\|>")

if not URL and os.environ.get("CI"):
    pytest.fail("QWEN3VL_VLLM_URL is not set: .ci/run must start vLLM for the served tier", pytrace=False)
pytestmark = pytest.mark.skipif(not URL, reason="no vLLM server (QWEN3VL_VLLM_URL unset; run "
                                "scripts/with_vllm.sh scripts/test.sh)")


@pytest.fixture(scope="module")
def server():
    node_out = Qwen3VLServerModel().connect(URL, "", "", 120.0, 4, True)
    return node_out[0]


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    from qwen3vl_pack.tests.tiny_model import build_tiny_model

    path = build_tiny_model(tmp_path_factory.mktemp("served") / "qwen3vl-tiny-served", "dense", size="vllm")
    return load_model(str(path), [], dtype="fp32", attention="sdpa", device="cpu")


@pytest.fixture(autouse=True)
def _fresh():
    served.forget_answers()


def _images(n, h=384, w=384):
    g = torch.Generator().manual_seed(n)
    return torch.rand(n, h, w, 3, generator=g)


def _tokenize(bundle, conversation) -> list[int]:
    req = to_openai(conversation)
    body = {"model": bundle.model, "messages": req.messages, "add_generation_prompt": True}
    if req.media_io_kwargs:
        body["media_io_kwargs"] = {"video": req.media_io_kwargs}
    response = httpx.post(URL.removesuffix("/v1") + "/tokenize", json=body, timeout=120)
    response.raise_for_status()
    return response.json()["tokens"]


def _detokenize(bundle, tokens) -> str:
    response = httpx.post(URL.removesuffix("/v1") + "/detokenize", json={"model": bundle.model, "tokens": tokens},
                          timeout=60)
    response.raise_for_status()
    return response.json()["prompt"]


def _info_number(info: str, key: str) -> int:
    return int(re.search(rf"{key}: (\d+)", info).group(1))


@pytest.mark.parametrize("count", [1, 3])
def test_generate_images_prompt_and_tokens_match(server, local, count):
    images = _images(count)
    text, thinking, info, chat = Qwen3VLGenerate().generate(server, "Describe these images.", "Greedy", 24,
                                                            image=images)
    _, _, local_info, _ = Qwen3VLGenerate().generate(local, "Describe these images.", "Greedy", 24, image=images)
    prompt = _info_number(info, "prompt tokens")
    conversation = chat.messages[:-1]
    assert prompt == len(_tokenize(server, list(conversation)))  # what the server itself counts
    assert prompt == _info_number(local_info, "prompt tokens")  # and what transformers counts here
    assert re.search(r"visual tokens per image: (.*)", info).group(1) == \
        re.search(r"visual tokens per image: (.*)", local_info).group(1)
    assert 1 <= _info_number(info, "generated tokens") <= 24
    again = Qwen3VLGenerate().generate(server, "Describe these images.", "Greedy", 24, image=images)
    assert again[0] == text  # greedy is reproducible on the server too


def test_sampling_presets_and_seed(server):
    image = _images(1)
    runs = [Qwen3VLGenerate().generate(server, "Describe.", "VL", 16, sampling=check_sampling(seed=seed), image=image)[0] for seed in (7, 7)]
    assert runs[0] == runs[1]


def test_chat_second_turn_matches_local_prompt_length(server, local):
    image = _images(1)
    gen = Qwen3VLGenerate()
    _, _, _, chat = gen.generate(server, "What is this?", "Greedy", 12, image=image, system_prompt="Be brief.")
    _, _, info, chat2 = gen.generate(server, "And the colours?", "Greedy", 12, chat=chat)
    assert chat2.turns == 2 and chat2.system_prompt == "Be brief."
    from qwen3vl_pack.loaders.engine import prepare_inputs

    inputs, _ = prepare_inputs(local.processor, [list(chat2.messages[:-1])], None, 1280 * 1024)
    assert _info_number(info, "prompt tokens") == inputs["input_ids"].shape[1]


@pytest.mark.parametrize("frames, fps, max_frames", [(60, 30.0, 64), (300, 30.0, 8), (1, 24.0, 64), (50, 25.0, 16)])
def test_video_timestamps_match_the_local_path(server, local, frames, fps, max_frames):
    clip = torch.rand(frames, 96, 128, 3, generator=torch.Generator().manual_seed(frames))
    item = prepare_video(clip, video_sampling(fps, 2.0, max_frames, 64))
    conversation = build_messages("Describe the video.", None, video=item)
    served_prompt = _detokenize(server, _tokenize(server, conversation))
    from qwen3vl_pack.loaders.engine import prepare_inputs

    inputs, _ = prepare_inputs(local.processor, [conversation])
    local_prompt = local.processor.tokenizer.decode(inputs["input_ids"][0])
    assert STAMP.findall(served_prompt) == STAMP.findall(local_prompt) != []
    assert served_prompt.count("<|video_pad|>") == local_prompt.count("<|video_pad|>") > 0
    # The prompts are the same but for an outer wrapper pair that some versions write around the frames (see
    # OUTER_VIDEO_WRAPPER): the difference in length is read from the two prompts, never from a version number.
    assert OUTER_VIDEO_WRAPPER.sub("", served_prompt) == OUTER_VIDEO_WRAPPER.sub("", local_prompt)
    extra = len(OUTER_VIDEO_WRAPPER.findall(served_prompt)) - len(OUTER_VIDEO_WRAPPER.findall(local_prompt))
    assert extra in (-2, 0, 2)
    assert len(_tokenize(server, conversation)) == inputs["input_ids"].shape[1] + extra
    text, _, info, _ = Qwen3VLGenerate().generate(server, "Describe the video.", "Greedy", 8, video=clip,
                                                  video_fps=fps, video_options=check_video_options(2.0, max_frames, 64))
    assert "timestamp" in info and _info_number(info, "prompt tokens") == inputs["input_ids"].shape[1] + extra


def test_grounding(server):
    images = _images(2, 256, 320)
    bboxes, mask, preview, json_text, text = Qwen3VLGrounding().ground(server, images, "cat", "boxes", 64,
                                                                       "Greedy")
    assert len(bboxes) == 2 and tuple(mask.shape) == (2, 256, 320) and tuple(preview.shape) == (2, 256, 320, 3)
    assert "=== image 1 ===" in text and "=== image 2 ===" in text


def test_batch_caption_in_order_and_equal_to_single_requests(server):
    images = [_images(1, 192 + 32 * i, 256) for i in range(5)]
    node = Qwen3VLBatchCaption()
    (captions,) = node.caption([server], images, ["custom"], [8], ["Greedy"], [12], [""], [""],
                               custom_prompt=["Caption this image."])
    assert len(captions) == 5
    served.forget_answers()
    singles = [node.caption([server], [img], ["custom"], [1], ["Greedy"], [12], [""], [""],
                            custom_prompt=["Caption this image."])[0][0] for img in images]
    assert captions == singles


def test_cli_ask_and_caption_through_the_server(tmp_path):
    from PIL import Image

    folder = tmp_path / "set"
    folder.mkdir()
    for i in range(4):
        Image.new("RGB", (128 + 32 * i, 128), (40 * i, 90, 200)).save(folder / f"img{i}.png")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    ask = subprocess.run([sys.executable, str(ROOT / "cli.py"), "ask", "--server", URL, "--image",
                          str(folder / "img0.png"), "--preset", "Greedy", "--max-new-tokens", "8", "--info",
                          "Describe."], capture_output=True, text=True, env=env, timeout=300)
    assert ask.returncode == 0, ask.stderr
    assert "prompt tokens:" in ask.stdout
    cap = subprocess.run([sys.executable, str(ROOT / "cli.py"), "caption", str(folder), "--server", URL,
                          "--concurrency", "3", "--max-new-tokens", "8", "--no-progress"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert cap.returncode == 0, cap.stderr
    assert sorted(p.name for p in folder.glob("*.txt")) == [f"img{i}.txt" for i in range(4)]
    assert all(len(p.read_text(encoding="utf-8").splitlines()) == 1 for p in folder.glob("*.txt"))


def test_bad_inputs_against_the_real_server(server):
    gen = Qwen3VLGenerate()
    with pytest.raises(InputError) as err:  # --limit-mm-per-prompt image=4
        gen.generate(server, "Describe.", "Greedy", 8, image=_images(5, 64, 64))
    assert str(err.value).startswith("image:") and "limit-mm-per-prompt" in str(err.value)
    with pytest.raises(InputError) as err:  # --max-model-len 2048
        gen.generate(server, "Describe.", "Greedy", 4000, image=_images(1))
    assert str(err.value).startswith("max_new_tokens:") and "server said" in str(err.value)
    with pytest.raises(InputError, match="^model:"):
        connect(URL, "no-such-model")
    assert gen.generate(server, "Describe.", "Greedy", 8, image=_images(1))[0] is not None  # next run works
