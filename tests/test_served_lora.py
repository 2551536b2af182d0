"""A LoRA served by a REAL vLLM (CPU build, ``--enable-lora --lora-modules NAME=PATH``) answers like the pack's own.

``scripts/with_vllm.sh`` builds a tiny adapter with peft (tests/tiny_lora.py), serves it next to the tiny model
and sets QWEN3VL_VLLM_LORA=NAME=PATH. The Server Model's ``model`` is then the adapter's NAME. Without a server
these tests are skipped, except under CI, where that is a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from qwen3vl_pack.loaders.cache import load_model
from qwen3vl_pack.loaders.lora import with_adapter
from qwen3vl_pack.nodes.caption import Qwen3VLBatchCaption
from qwen3vl_pack.nodes.generate import Qwen3VLGenerate
from qwen3vl_pack.nodes.server import Qwen3VLServerModel

URL = os.environ.get("QWEN3VL_VLLM_URL", "")
LORA = os.environ.get("QWEN3VL_VLLM_LORA", "")
SERVED_DIR = os.environ.get("QWEN3VL_VLLM_MODEL_DIR", "")  # the served model's folder (its weights)

if not (URL and LORA and SERVED_DIR) and os.environ.get("CI"):
    pytest.fail("QWEN3VL_VLLM_URL / QWEN3VL_VLLM_LORA / QWEN3VL_VLLM_MODEL_DIR are not set: .ci/run must start vLLM with the tiny LoRA "
                "(scripts/with_vllm.sh)", pytrace=False)
pytestmark = pytest.mark.skipif(not (URL and LORA and SERVED_DIR), reason="no vLLM server with a LoRA (run scripts/with_vllm.sh "
                                "scripts/test.sh)")


@pytest.fixture(scope="module")
def served():
    name = LORA.split("=", 1)[0]
    connect = Qwen3VLServerModel().connect
    return connect(URL, "", "", 120.0, 4, True)[0], connect(URL, name, "", 120.0, 4, True)[0]


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    from qwen3vl_pack.tests.tiny_model import build_tiny_model

    path = build_tiny_model(tmp_path_factory.mktemp("served-lora") / "qwen3vl-tiny-served", "dense", size="vllm")
    # config and tokenizer as this transformers writes them, weights exactly the served ones (4.57 and 5.x
    # initialise random weights differently)
    shutil.copyfile(Path(SERVED_DIR) / "model.safetensors", path / "model.safetensors")
    base = load_model(str(path), [], dtype="fp32", attention="sdpa", device="cpu")
    return base, with_adapter(base, LORA.split("=", 1)[1])


def _image():
    return torch.rand(1, 256, 256, 3, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("with_image", [False, True])
def test_served_lora_answers_like_the_local_lora(served, local, with_image):
    gen = Qwen3VLGenerate()
    image = _image() if with_image else None
    (served_base, served_lora), (local_base, local_lora) = served, local
    # a random model often ends on half a UTF-8 character; vLLM's incremental detokenizer and transformers'
    # decode show that half differently, so a trailing U+FFFD is not compared
    answers = [gen.generate(m, "Describe this image.", "Greedy", 16, image=image)[0].rstrip("\ufffd")
               for m in (served_base, served_lora, local_base, local_lora)]
    assert answers[1] == answers[3]  # vLLM's LoRA and the pack's LoRA give the same greedy answer
    assert answers[0] == answers[2]  # and so do the two base models
    assert answers[1] != answers[0]  # the adapter changes the served answer: it is really applied


def test_batch_caption_through_the_served_lora(served, local):
    node = Qwen3VLBatchCaption()
    gen = torch.Generator().manual_seed(5)
    images = [torch.rand(1, 128, 96 + 32 * i, 3, generator=gen) for i in range(3)]
    caption = lambda m: [c.rstrip("\ufffd") for c in node.caption(  # noqa: E731
        [m], images, ["custom"], [1], ["Greedy"], [10], [""], [""], custom_prompt=["Caption this image."])[0]]
    assert caption(served[1]) == caption(local[1]) != caption(served[0])
