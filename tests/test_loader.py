"""Loader and MODEL_CACHE on tiny real Qwen3-VL folders (dense and MoE)."""

from __future__ import annotations

import gc
import importlib.util
import json
import logging
import shutil
import weakref

import pytest
import torch

from qwen3vl_pack.loaders import cache
from qwen3vl_pack.loaders.cache import MODEL_CACHE, load_model, unload, unload_all
from qwen3vl_pack.utils.errors import InputError, ModelLoadError

pytestmark = pytest.mark.usefixtures("clean_cache")


def test_family_comes_from_config_not_folder_name(tiny_models):
    from transformers import Qwen3VLForConditionalGeneration, Qwen3VLMoeForConditionalGeneration

    dense = load_model(str(tiny_models["dense"]), device="cpu")
    moe = load_model(str(tiny_models["moe"]), device="cpu")
    assert tiny_models["dense"].name == "alpha" and tiny_models["moe"].name == "beta"
    assert type(dense.model) is Qwen3VLForConditionalGeneration and dense.family == "qwen3_vl"
    assert type(moe.model) is Qwen3VLMoeForConditionalGeneration and moe.family == "qwen3_vl_moe"
    assert dense.dtype == "fp32" and dense.device == "cpu" and dense.attention == "sdpa"
    assert dense.model.dtype == torch.float32
    assert type(dense.processor).__name__ == "Qwen3VLProcessor"


def test_folder_name_found_in_search_dirs(tiny_models):
    bundle = load_model("beta", [str(tiny_models["dense"].parent.parent / "nowhere"),
                                 str(tiny_models["moe"].parent)], device="cpu")
    assert bundle.path == str(tiny_models["moe"].resolve())


def test_cache_hit_returns_same_objects_without_disk(dense_path, monkeypatch):
    first = load_model(str(dense_path), device="cpu")
    model, processor = first.model, first.processor

    def no_disk(key):
        raise AssertionError("a cache hit must not read the disk")

    monkeypatch.setattr(cache, "_load_from_disk", no_disk)
    second = load_model(str(dense_path), device="cpu")
    assert second is first and second.model is model and second.processor is processor
    assert len(MODEL_CACHE) == 1


@pytest.mark.parametrize("change", [{"dtype": "bf16"}, {"attention": "eager"}])
def test_other_dtype_or_attention_is_a_new_entry(dense_path, change):
    base = load_model(str(dense_path), device="cpu", dtype="fp32", attention="sdpa")
    other = load_model(str(dense_path), device="cpu", **{"dtype": "fp32", "attention": "sdpa", **change})
    assert other.key != base.key and other.model is not base.model and len(MODEL_CACHE) == 2
    if "dtype" in change:
        assert other.model.dtype == torch.bfloat16
    else:
        assert other.model.config._attn_implementation == "eager"


def test_unload_frees_the_model(dense_path):
    bundle = load_model(str(dense_path), device="cpu")
    ref = weakref.ref(bundle.model)
    assert unload(bundle.key) is True
    gc.collect()
    assert ref() is None and bundle.key not in MODEL_CACHE
    assert unload(bundle.key) is False
    # the bundle ComfyUI still holds reloads transparently
    assert bundle.model is not None and bundle.key in MODEL_CACHE
    assert unload_all() == 1 and not MODEL_CACHE


def test_flash_attention_falls_back_to_sdpa_with_one_warning(dense_path, caplog):
    assert importlib.util.find_spec("flash_attn") is None  # this machine has no flash-attn
    with caplog.at_level(logging.WARNING):
        bundle = load_model(str(dense_path), device="cpu", attention="flash_attention_2")
    warnings = [r for r in caplog.records if "flash_attention_2" in r.getMessage()]
    assert len(warnings) == 1 and "sdpa" in warnings[0].getMessage()
    assert bundle.attention == "sdpa" and bundle.model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("quantization", ["4-bit", "8-bit"])
def test_bitsandbytes_loads_and_generates_on_cpu(dense_path, quantization):
    pytest.importorskip("bitsandbytes")
    from qwen3vl_pack.loaders.tasks import ask
    from qwen3vl_pack.utils.presets import resolve_options

    bundle = load_model(str(dense_path), device="cpu", quantization=quantization)
    layer = bundle.model.model.language_model.layers[0].mlp.gate_proj
    expected = "Linear4bit" if quantization == "4-bit" else "Linear8bitLt"
    assert type(layer).__name__ == expected
    assert type(bundle.model.lm_head).__name__ == "Linear"
    assert type(bundle.model.model.visual.blocks[0].mlp.linear_fc1).__name__ == "Linear"
    result = ask(bundle, "Describe.", resolve_options("Greedy", 8), [torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)])
    assert result.new_tokens >= 1 and isinstance(result.text, str)


def test_missing_bitsandbytes_is_a_clear_error(dense_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(InputError, match="^quantization: .*pip install bitsandbytes"):
        load_model(str(dense_path), device="cpu", quantization="4-bit")
    assert load_model(str(dense_path), device="cpu").model is not None  # the next call works


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_bad_model_folders(dense_path, tmp_path):
    with pytest.raises(ModelLoadError, match="^model: folder .* does not exist"):
        load_model(str(tmp_path / "missing"))
    with pytest.raises(ModelLoadError, match="^model: no folder named 'ghost'"):
        load_model("ghost", [str(tmp_path)])
    no_config = _copy(dense_path, tmp_path / "noconfig")
    (no_config / "config.json").unlink()
    with pytest.raises(ModelLoadError, match="has no config.json"):
        load_model(str(no_config))
    corrupt = _copy(dense_path, tmp_path / "corrupt")
    (corrupt / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="config.json .* cannot be read"):
        load_model(str(corrupt))
    wrong = _copy(dense_path, tmp_path / "wrong")
    cfg = json.loads((wrong / "config.json").read_text())
    cfg["model_type"] = "qwen2_5_vl"
    (wrong / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="model_type 'qwen2_5_vl', which is not Qwen3-VL"):
        load_model(str(wrong))
    pickle_only = _copy(dense_path, tmp_path / "pickle")
    (pickle_only / "model.safetensors").rename(pickle_only / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="only as pickle files .*safetensors"):
        load_model(str(pickle_only))
    no_tok = _copy(dense_path, tmp_path / "notok")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        (no_tok / name).unlink(missing_ok=True)
    with pytest.raises(ModelLoadError, match="processor/tokenizer files .* cannot be loaded"):
        load_model(str(no_tok), device="cpu")
    assert not MODEL_CACHE
    assert load_model(str(dense_path), device="cpu").model is not None  # the next run works


def test_corrupt_weights_are_a_clear_error_naming_the_input(dense_path, tmp_path):
    broken = _copy(dense_path, tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="^model_path: the weights in .* cannot be loaded"):
        load_model(str(broken), device="cpu", input_name="model_path")
    assert load_model(str(dense_path), device="cpu").model is not None


def test_model_path_input_name_in_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="^model_path: "):
        load_model(str(tmp_path / "nope"), input_name="model_path")
