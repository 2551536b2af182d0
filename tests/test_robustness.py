"""OOM, context overflow, interrupt and trust_remote_code handling on the tiny model."""

from __future__ import annotations

import logging
import types

import pytest
import torch

from qwen3vl_pack.loaders.cache import MODEL_CACHE, load_model
from qwen3vl_pack.nodes import comfy_services
from qwen3vl_pack.nodes.generate import Qwen3VLGenerate
from qwen3vl_pack.utils.errors import GenerationOOMError, InputError

pytestmark = pytest.mark.usefixtures("clean_cache")


def _image(h=64, w=64):
    return torch.rand(1, h, w, 3)


def test_oom_during_generate_is_clear_drops_cache_and_next_call_works(dense_path, monkeypatch):
    bundle = load_model(str(dense_path), device="cpu")
    cls = type(bundle.model)
    real = cls.generate

    def oom(self, *a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(cls, "generate", oom)
    with pytest.raises(GenerationOOMError) as err:
        Qwen3VLGenerate().generate(bundle, "Describe.", "Greedy", 8, image=_image())
    msg = str(err.value)
    assert "out of device memory" in msg and "max_visual_tokens" in msg and "4-bit" in msg
    assert bundle.key not in MODEL_CACHE  # memory released
    monkeypatch.setattr(cls, "generate", real)
    info = Qwen3VLGenerate().generate(bundle, "Describe.", "Greedy", 4, image=_image())[2]
    assert "generated tokens: " in info and bundle.key in MODEL_CACHE


def test_max_new_tokens_past_context_is_refused(dense):
    context = dense.model.config.text_config.max_position_embeddings
    with pytest.raises(InputError) as err:
        Qwen3VLGenerate().generate(dense, "hi", "Greedy", context)
    assert err.value.input_name == "max_new_tokens" and "at most" in str(err.value)
    assert Qwen3VLGenerate().generate(dense, "hi", "Greedy", 2)[0] is not None


class FakeInterrupt(Exception):
    """Stands in for comfy.model_management.InterruptProcessingException."""


def test_interrupt_stops_within_one_decode_step(dense, monkeypatch):
    state = {"flag": False, "forwards": 0, "forwards_after_flag": 0, "progress": [], "checks": 0}

    def throw_if_interrupted():
        state["checks"] += 1
        if state["flag"]:
            state["flag"] = False  # ComfyUI clears the flag when it throws
            raise FakeInterrupt("Processing interrupted")

    class Bar:
        def __init__(self, total):
            self.total = total

        def update_absolute(self, value, total=None):
            state["progress"].append(value)

    monkeypatch.setattr(comfy_services, "model_management",
                        types.SimpleNamespace(throw_exception_if_processing_interrupted=throw_if_interrupted))
    monkeypatch.setattr(comfy_services, "comfy_utils", types.SimpleNamespace(ProgressBar=Bar))

    def count(module, args, output):
        if state["flag"]:
            state["forwards_after_flag"] += 1
        state["forwards"] += 1
        if state["forwards"] == 5:  # the user presses Cancel during the 5th forward pass (4th decode step)
            state["flag"] = True

    # no end-of-sequence token: random weights must not end the answer before Cancel is pressed
    monkeypatch.setattr(dense.model.generation_config, "eos_token_id", None)
    handle = dense.model.register_forward_hook(count)
    try:
        with pytest.raises(FakeInterrupt):
            Qwen3VLGenerate().generate(dense, "Tell a long story.", "VL", 500)
    finally:
        handle.remove()
    # Cancel is checked at every decode step even though the bar is drawn at most every 0.1 s
    assert state["checks"] == 5 and state["progress"][0] == 1 and max(state["progress"]) <= 5
    assert state["forwards_after_flag"] == 0
    assert dense.key in MODEL_CACHE  # the cache stays usable
    info = Qwen3VLGenerate().generate(dense, "again", "Greedy", 3)[2]
    assert "generated tokens: " in info


def test_trust_remote_code_is_off_by_default_and_warned_when_on(dense_path, caplog):
    default = load_model(str(dense_path), device="cpu")
    assert default.key.trust_remote_code is False
    with caplog.at_level(logging.WARNING):
        on = load_model(str(dense_path), device="cpu", trust_remote_code=True)
    assert on.key != default.key and "trust_remote_code is ON" in caplog.text


def test_oom_in_batch_captioning_names_batch_size_and_unloads(dense_path, monkeypatch):
    from qwen3vl_pack.nodes.caption import Qwen3VLBatchCaption

    bundle = load_model(str(dense_path), device="cpu")
    cls = type(bundle.model)

    def oom(self, *a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")

    monkeypatch.setattr(cls, "generate", oom)
    with pytest.raises(GenerationOOMError) as err:
        Qwen3VLBatchCaption().caption([bundle], [_image(), _image()], ["short"], [2], ["Greedy"], [8], [""], [""])
    assert str(err.value).startswith("batch_size: out of device memory") and "lower batch_size" in str(err.value)
    assert bundle.key not in MODEL_CACHE
