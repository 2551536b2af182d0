"""LoRA adapters (peft folders) on the tiny Qwen3-VL models: the pack's greedy answers equal PeftModel's own."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch
from PIL import Image

from qwen3vl_pack.loaders import cache, engine, lora
from qwen3vl_pack.loaders.cache import load_model
from qwen3vl_pack.loaders.lora import describe, with_adapter
from qwen3vl_pack.loaders.tasks import run_conversations
from qwen3vl_pack.tests.tiny_lora import (
    ATTENTION_TARGETS,
    TEXT_TARGETS,
    VISION_TARGETS,
    build_tiny_lora,
)
from qwen3vl_pack.utils.messages import build_messages
from qwen3vl_pack.utils.presets import resolve_options

pytest.importorskip("peft", reason="peft is in requirements-test.txt; CI installs it")
pytestmark = pytest.mark.usefixtures("clean_cache")
GREEDY = resolve_options("Greedy", 10)
CASES = {  # name: (family, targets, layout)
    "dense-text-wrapper": ("dense", TEXT_TARGETS, "wrapper"),
    "dense-text-textlayout": ("dense", TEXT_TARGETS, "text"),
    "dense-vision-wrapper": ("dense", TEXT_TARGETS + VISION_TARGETS, "wrapper"),
    "dense-vision-textlayout": ("dense", TEXT_TARGETS + VISION_TARGETS, "text"),
    "moe-attn-wrapper": ("moe", ATTENTION_TARGETS, "wrapper"),
    "moe-vision-textlayout": ("moe", ATTENTION_TARGETS + VISION_TARGETS, "text"),
}


@pytest.fixture(scope="module")
def adapters(tiny_models, tmp_path_factory):
    """Every case's adapter, plus the same weights in the wrapper layout (what PeftModel loads as reference)."""
    base = tmp_path_factory.mktemp("loras")
    made = {}
    for i, (name, (family, targets, layout)) in enumerate(CASES.items()):
        made[name] = build_tiny_lora(tiny_models[family], base / name, targets, layout, seed=i)
        made[name + "/ref"] = made[name] if layout == "wrapper" else \
            build_tiny_lora(tiny_models[family], base / (name + "-ref"), targets, "wrapper", seed=i)
    made["second"] = build_tiny_lora(tiny_models["dense"], base / "second", ATTENTION_TARGETS, seed=99, alpha=4)
    made["rslora"] = build_tiny_lora(tiny_models["dense"], base / "rslora", TEXT_TARGETS, seed=5, r=4, use_rslora=True,
                                     rank_pattern={"q_proj": 2}, alpha_pattern={"layers.1.mlp.down_proj": 3.0})
    return made


def _image(seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    pil = Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    return torch.from_numpy(np.array(pil)).permute(2, 0, 1).contiguous()


def _conversations():
    return [build_messages("Describe this image.", [_image(0)]), build_messages("What is in the picture?")]


def _pack_ids(bundle) -> list[list[int]]:
    return [r.token_ids for r in run_conversations(bundle, _conversations(), GREEDY)]


def _peft_ids(model_dir, adapter_dirs, scale: float = 1.0) -> list[list[int]]:
    """PeftModel's own greedy answers on the same conversations, through the same template and processor."""
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    base = AutoModelForImageTextToText.from_pretrained(str(model_dir)).float().eval()
    model = PeftModel.from_pretrained(base, str(adapter_dirs[0]), adapter_name="a0")
    for i, folder in enumerate(adapter_dirs[1:], 1):
        model.load_adapter(str(folder), adapter_name=f"a{i}")
    model.base_model.set_adapter([f"a{i}" for i in range(len(adapter_dirs))])
    if scale != 1.0:
        for module in model.modules():
            if hasattr(module, "scale_layer"):
                module.scale_layer(scale)
    model.eval()
    processor = AutoProcessor.from_pretrained(str(model_dir))
    return [r.token_ids for r in engine.generate(model, processor, _conversations(), GREEDY)]


def _dense(path):
    return load_model(str(path), [], dtype="fp32", attention="sdpa", device="cpu")


def _prepared(bundle, folder):
    return next(p for k, p in lora._store(bundle).items() if k[0] == str(folder))


def _no_hooks(model) -> bool:
    return all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("case", list(CASES))
def test_answers_equal_peft_model(case, adapters, tiny_models):
    family, _, layout = CASES[case]
    base = _dense(tiny_models[family])
    base_ids = _pack_ids(base)
    bundle = with_adapter(base, str(adapters[case]))
    ids = _pack_ids(bundle)
    assert ids == _peft_ids(tiny_models[family], [adapters[case + "/ref"]])
    assert ids != base_ids  # the adapter really changes the answers (else this test could not fail)
    assert bundle.adapters[0].modules > 0 and _no_hooks(base.model)
    names = set(_prepared(base, adapters[case]).weights)
    assert any(n.startswith("model.language_model.layers.") for n in names)
    assert any(n.startswith("model.visual.") for n in names) == ("vision" in case)


def test_vision_targets_change_the_vision_tower(adapters, tiny_models):
    bundle = with_adapter(_dense(tiny_models["dense"]), str(adapters["dense-vision-textlayout"]))
    prepared = _prepared(bundle, adapters["dense-vision-textlayout"])
    names = set(prepared.weights)
    assert any(n.startswith("model.visual.blocks.") for n in names)
    assert any(n.startswith("model.visual.merger.") for n in names)
    assert any(n.startswith("model.language_model.layers.") for n in names)
    assert prepared.remapped == len(names) and bundle.adapters[0].modules == len(names)


def test_strength_zero_is_the_base_and_half_is_peft_scaled(adapters, tiny_models):
    base = _dense(tiny_models["dense"])
    base_ids = _pack_ids(base)
    assert _pack_ids(with_adapter(base, str(adapters["dense-text-wrapper"]), strength=0.0)) == base_ids
    half = _pack_ids(with_adapter(base, str(adapters["dense-text-wrapper"]), strength=0.5))
    assert half == _peft_ids(tiny_models["dense"], [adapters["dense-text-wrapper"]], scale=0.5)
    assert half != base_ids


def test_chained_adapters_equal_peft_with_both_active(adapters, tiny_models):
    base = _dense(tiny_models["dense"])
    both = with_adapter(with_adapter(base, str(adapters["dense-text-wrapper"])), str(adapters["second"]))
    assert [r.name for r in both.adapters] == ["dense-text-wrapper", "second"]
    assert _pack_ids(both) == _peft_ids(tiny_models["dense"], [adapters["dense-text-wrapper"], adapters["second"]])
    assert "LoRA dense-text-wrapper (strength 1" in describe(both) and "+ LoRA second" in describe(both)


def test_switching_adapters_never_reloads_and_never_leaks(adapters, tiny_models):
    loads = []
    cache.add_load_hook(lambda key, size: loads.append(key))
    try:
        base = _dense(tiny_models["dense"])
        before = {k: v.clone() for k, v in base.model.state_dict().items()}
        base_ids = _pack_ids(base)
        first = with_adapter(base, str(adapters["dense-text-wrapper"]))
        second = with_adapter(base, str(adapters["second"]))
        first_ids, second_ids = _pack_ids(first), _pack_ids(second)
        assert first_ids != second_ids and base_ids not in (first_ids, second_ids)
        assert _pack_ids(base) == base_ids and _pack_ids(first) == first_ids  # no leak, either way
        assert len(loads) == 1  # the base weights came from disk once
        assert first.model is base.model and _no_hooks(base.model)
        after = base.model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)  # the base is exactly restored
        assert first != second and first != base and first.key == base.key
    finally:
        cache.remove_load_hook(loads.append)


def test_hooks_are_removed_when_generation_fails(adapters, tiny_models, monkeypatch):
    base = _dense(tiny_models["dense"])
    bundle = with_adapter(base, str(adapters["dense-text-wrapper"]))

    def boom(*args, **kwargs):
        raise RuntimeError("generation failed")

    monkeypatch.setattr(engine, "prepare_inputs", boom)
    with pytest.raises(RuntimeError, match="generation failed"):
        _pack_ids(bundle)
    assert _no_hooks(base.model)
    monkeypatch.undo()
    assert _pack_ids(bundle) != _pack_ids(base)


def test_unloaded_base_reloads_with_the_adapter(adapters, tiny_models):
    base = _dense(tiny_models["dense"])
    bundle = with_adapter(base, str(adapters["dense-text-wrapper"]))
    ids = _pack_ids(bundle)
    matched = weakref.ref(_prepared(base, adapters["dense-text-wrapper"]).weights[
        "model.language_model.layers.0.self_attn.q_proj"][1])
    cache.unload_all()
    gc.collect()
    assert matched() is None  # the matched adapter went with the model (no VRAM left behind by Unload)
    assert _pack_ids(bundle) == ids


def test_rslora_and_rank_alpha_patterns_equal_peft_model(adapters, tiny_models):
    base = _dense(tiny_models["dense"])
    ids = _pack_ids(with_adapter(base, str(adapters["rslora"])))
    assert ids == _peft_ids(tiny_models["dense"], [adapters["rslora"]]) and ids != _pack_ids(base)
    weights = _prepared(base, adapters["rslora"]).weights
    assert weights["model.language_model.layers.0.self_attn.q_proj"][0].shape[0] == 2  # rank_pattern
    assert weights["model.language_model.layers.1.mlp.down_proj"][2] == pytest.approx(3.0 / 2)  # alpha / sqrt(r)
    assert weights["model.language_model.layers.0.mlp.down_proj"][2] == pytest.approx(8.0 / 2)  # lora_alpha 8


KEY_VARIANTS = {  # how a key of the wrapper layout may be written by other savers
    "no peft prefix": lambda k: k.removeprefix("base_model.model."),
    "adapter name in the key": lambda k: k.replace(".lora_A.weight", ".lora_A.default.weight").replace(
        ".lora_B.weight", ".lora_B.default.weight"),
    "torch.compile": lambda k: k.replace("base_model.model.", "base_model.model._orig_mod."),
    "language_model.model": lambda k: k.replace("base_model.model.model.language_model.",
                                                "base_model.model.language_model.model."),
}


@pytest.mark.parametrize("variant", list(KEY_VARIANTS))
def test_key_variants_apply_like_the_wrapper_layout(variant, adapters, tiny_models, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    src = adapters["dense-vision-wrapper"]
    folder = tmp_path / "variant"
    shutil.copytree(src, folder)
    state = load_file(str(folder / "adapter_model.safetensors"))
    renamed = {KEY_VARIANTS[variant](k): v for k, v in state.items()}
    assert set(renamed) != set(state)
    save_file(renamed, str(folder / "adapter_model.safetensors"))
    base = _dense(tiny_models["dense"])
    assert _pack_ids(with_adapter(base, str(folder))) == _pack_ids(with_adapter(base, str(src)))


QWEN35_TARGETS = ["q_proj", "v_proj", "o_proj", "in_proj_qkv", "out_proj", "gate_proj", "down_proj", "qkv"]


@pytest.mark.parametrize("layout", ["wrapper", "text"])
def test_qwen35_answers_equal_peft_model(layout, qwen35_models, tmp_path):
    """Qwen3.5 (linear + full attention layers, vision tower): the same equality with PeftModel, both layouts."""
    model_dir = qwen35_models["dense"]
    adapter = build_tiny_lora(model_dir, tmp_path / layout, QWEN35_TARGETS, layout, seed=11)
    reference = adapter if layout == "wrapper" else build_tiny_lora(model_dir, tmp_path / "ref", QWEN35_TARGETS,
                                                                    "wrapper", seed=11)
    base = _dense(model_dir)
    ids = _pack_ids(with_adapter(base, str(adapter)))
    assert ids == _peft_ids(model_dir, [reference]) and ids != _pack_ids(base)
    assert any(".linear_attn." in n for n in _prepared(base, adapter).weights)
