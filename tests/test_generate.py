"""Generation on a tiny real Qwen3-VL through the node and the engine (real transformers path)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from qwen3vl_pack.loaders import engine
from qwen3vl_pack.loaders.tasks import ask
from qwen3vl_pack.nodes.generate import Qwen3VLGenerate
from qwen3vl_pack.tests.spies import spy_prepare_inputs
from qwen3vl_pack.utils.errors import InputError
from qwen3vl_pack.utils.node_options import check_sampling
from qwen3vl_pack.utils.presets import resolve_options


def _pil(seed: int, size=(96, 64)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _comfy_image(*pils) -> torch.Tensor:
    """What ComfyUI's LoadImage makes: float32 [B,H,W,3] = uint8 / 255."""
    return torch.stack([torch.from_numpy(np.asarray(p, dtype=np.float32) / 255.0) for p in pils])


def test_every_image_of_a_batch_reaches_the_model(dense, monkeypatch):
    calls = spy_prepare_inputs(monkeypatch)
    image = _comfy_image(_pil(1), _pil(2), _pil(3))
    text, thinking, info, _ = Qwen3VLGenerate().generate(dense, "Compare these.", "Greedy", 8, image=image)
    inputs = calls[0]
    assert inputs["image_grid_thw"].shape == (3, 3)
    per_image = (inputs["image_grid_thw"].prod(-1) // 4).tolist()
    image_token_id = dense.model.config.image_token_id
    assert int((inputs["input_ids"] == image_token_id).sum()) == sum(per_image)
    assert info.count("<|image_pad|>×") == 3
    assert "visual tokens per image: " + ", ".join(map(str, per_image)) in info
    assert isinstance(text, str) and isinstance(thinking, str)


def test_processor_keys_are_all_passed_to_generate(dense, monkeypatch):
    seen = {}
    real = type(dense.model).generate

    def spy(self, **kwargs):
        seen.update(kwargs)
        return real(self, **kwargs)

    monkeypatch.setattr(type(dense.model), "generate", spy)
    inputs, _ = engine.prepare_inputs(dense.processor, [[{"role": "user", "content": [
        {"type": "image", "image": _pil(0)}, {"type": "text", "text": "hi"}]}]])
    Qwen3VLGenerate().generate(dense, "hi", "Greedy", 2, image=_comfy_image(_pil(0)))
    assert set(inputs.keys()) <= set(seen)


def test_node_matches_plain_transformers_under_greedy(dense):
    pil = _pil(7, (200, 150))
    model, processor = dense.model, dense.processor
    messages = [{"role": "user", "content": [{"type": "image", "image": pil},
                                             {"type": "text", "text": "Describe this image."}]}]
    inputs = processor.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                           return_dict=True, return_tensors="pt").to(model.device)
    out = model.generate(**inputs, max_new_tokens=24, do_sample=False)
    plain_ids = out[0, inputs["input_ids"].shape[1]:].tolist()
    plain_text = processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True,
                                        clean_up_tokenization_spaces=False)[0]

    result = ask(dense, "Describe this image.", resolve_options("Greedy", 24),
                 images=[torch.from_numpy(np.array(pil)).permute(2, 0, 1)], max_visual_tokens=0)
    assert result.token_ids == plain_ids
    text, _, _, _ = Qwen3VLGenerate().generate(dense, "Describe this image.", "Greedy", 24,
                                            image=_comfy_image(pil), max_visual_tokens=0)
    assert text == plain_text.strip()


def test_same_seed_same_output_and_global_rng_untouched(dense):
    node = Qwen3VLGenerate()
    image = _comfy_image(_pil(4))
    torch.manual_seed(1234)
    before = torch.random.get_rng_state().clone()
    a = node.generate(dense, "Describe.", "VL", 20, sampling=check_sampling(seed=42), image=image)[0]
    assert torch.equal(torch.random.get_rng_state(), before)
    b = node.generate(dense, "Describe.", "VL", 20, sampling=check_sampling(seed=42), image=image)[0]
    assert a == b
    outs = {node.generate(dense, "Describe.", "VL", 20, sampling=check_sampling(seed=s), image=image)[0] for s in range(1, 6)}
    assert len(outs) > 1  # the seed matters under sampling
    assert torch.equal(torch.random.get_rng_state(), before)


def test_text_only_and_system_prompt(dense):
    text, thinking, info, _ = Qwen3VLGenerate().generate(dense, "Say hi.", "Text", 6, system_prompt="Be brief.")
    assert "<|im_start|>system\nBe brief.<|im_end|>" in info
    assert "visual tokens" not in info
    assert "generated tokens: " in info and "tokens/s" in info


def test_visual_token_budget_bounds_the_grid(dense, monkeypatch):
    calls = spy_prepare_inputs(monkeypatch)
    image = _comfy_image(_pil(5, (512, 512)))
    node = Qwen3VLGenerate()
    node.generate(dense, "d", "Greedy", 1, image=image, max_visual_tokens=16)
    node.generate(dense, "d", "Greedy", 1, image=image, max_visual_tokens=64)
    small, large = (int(c["image_grid_thw"].prod()) // 4 for c in calls)
    assert small <= 16 < large <= 64


def test_thinking_is_split_from_the_answer(dense, monkeypatch):
    tok = dense.processor.tokenizer
    scripted = tok.encode("<think>step one</think>final answer") + [tok.convert_tokens_to_ids("<|im_end|>")]

    def scripted_generate(self, input_ids=None, **kwargs):
        return torch.cat([input_ids, torch.tensor([scripted])], dim=1)

    monkeypatch.setattr(type(dense.model), "generate", scripted_generate)
    text, thinking, info, _ = Qwen3VLGenerate().generate(dense, "Think.", "Thinking", 50)
    assert (text, thinking) == ("final answer", "step one")


@pytest.mark.parametrize("kwargs,name", [
    (dict(prompt="x", max_new_tokens=0), "max_new_tokens"),
    (dict(prompt="   ", max_new_tokens=4), "prompt"),
    (dict(prompt="x", max_new_tokens=4, image=torch.full((1, 8, 8, 3), float("nan"))), "image"),
    (dict(prompt="x", max_new_tokens=4, min_visual_tokens=100, max_visual_tokens=10), "min_visual_tokens"),
])
def test_bad_inputs_then_next_run_works(dense, kwargs, name):
    node = Qwen3VLGenerate()
    with pytest.raises(InputError) as err:
        node.generate(dense, preset="Greedy", **kwargs)
    assert err.value.input_name == name and str(err.value).startswith(name + ":")
    text, _, _, _ = node.generate(dense, "ok", "Greedy", 2)
    assert isinstance(text, str)


def test_moe_generates(moe_path):
    from qwen3vl_pack.loaders.cache import load_model

    bundle = load_model(str(moe_path), device="cpu")
    text, _, info, _ = Qwen3VLGenerate().generate(bundle, "Describe.", "Greedy", 4, image=_comfy_image(_pil(9)))
    assert "generated tokens: " in info and isinstance(text, str)


def test_keep_loaded_off_frees_after_run(dense_path, clean_cache):
    from qwen3vl_pack.loaders.cache import MODEL_CACHE, load_model

    bundle = load_model(str(dense_path), device="cpu", keep_loaded=False)
    Qwen3VLGenerate().generate(bundle, "hi", "Greedy", 2)
    assert bundle.key not in MODEL_CACHE
