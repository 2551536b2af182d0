"""8-/4-bit where it works, refused where it cannot (MoE, pre-quantized folders); dtype and attention choices."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch

from qwen3vl_pack.loaders import options as opt
from qwen3vl_pack.loaders import resolve
from qwen3vl_pack.loaders.cache import load_model, make_key
from qwen3vl_pack.tests.quant_share import count_share, meta_model, real_30b_a3b_config
from qwen3vl_pack.utils.errors import InputError

pytestmark = pytest.mark.usefixtures("clean_cache")


# ---- MoE + bitsandbytes ----------------------------------------------------------------------------------------


def test_real_30b_a3b_would_barely_shrink_with_bitsandbytes():
    """The public Qwen3-VL-30B-A3B config on the meta device: bitsandbytes reaches 2.9 % of the weights."""
    share = count_share(meta_model(real_30b_a3b_config()))
    assert 31.0e9 < share.total < 31.2e9  # 31.07 B parameters
    assert share.fraction < 0.05  # 0.91 B in nn.Linear outside the vision tower and lm_head
    assert share.gib(4) > 0.97 * share.gib(16)  # "4-bit" ~56.6 GiB against 57.9 GiB in bf16


def test_the_count_is_what_bitsandbytes_really_quantizes(moe_path):
    """Cross-check of the meta-device rule on the tiny MoE really loaded in 4-bit by transformers."""
    pytest.importorskip("bitsandbytes")
    from transformers import BitsAndBytesConfig, Qwen3VLMoeForConditionalGeneration

    quant = BitsAndBytesConfig(load_in_4bit=True, llm_int8_skip_modules=list(opt.QUANT_SKIP_MODULES))
    from qwen3vl_pack.loaders.compat import dtype_kwarg

    model = Qwen3VLMoeForConditionalGeneration.from_pretrained(moe_path, quantization_config=quant,
                                                               device_map={"": "cpu"},
                                                               **dtype_kwarg(torch.float32))  # 4.57 defaults to fp16
    quantized = sum(int(torch.Size(m.weight.quant_state.shape).numel()) for m in model.modules()
                    if type(m).__name__ == "Linear4bit")
    experts = model.model.language_model.layers[0].mlp.experts
    assert experts.gate_up_proj.dtype == torch.float32  # the fused experts were left alone (not packed to uint8)
    config = json.loads((moe_path / "config.json").read_text(encoding="utf-8"))
    assert quantized == count_share(meta_model(config)).quantized > 0


@pytest.mark.parametrize("quantization", ["8-bit", "4-bit"])
def test_moe_with_bitsandbytes_is_refused_with_what_works(moe_path, quantization):
    with pytest.raises(InputError, match="^quantization: ") as err:
        load_model(str(moe_path), device="cpu", quantization=quantization)
    message = str(err.value)
    assert "MoE" in message and "FP8" in message and "AWQ" in message and "GPTQ" in message
    assert "served" in message and "2.9 %" in message
    assert load_model(str(moe_path), device="cpu").model is not None  # without quantization it loads


def _with_own_quantization(src, dst, method: str):
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text(encoding="utf-8"))
    config["quantization_config"] = {"quant_method": method, "fmt": "e4m3", "weight_block_size": [128, 128]}
    (dst / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return dst


@pytest.mark.parametrize("method", ["fp8", "awq", "gptq", "compressed-tensors"])
def test_bitsandbytes_on_a_quantized_folder_is_refused(dense_path, tmp_path, method):
    folder = _with_own_quantization(dense_path, tmp_path / "q", method)
    assert resolve.read_own_quantization(folder) == method and resolve.read_own_quantization(dense_path) is None
    with pytest.raises(InputError, match=f"^quantization: 4-bit .*own quantization \\({method}"):
        make_key(str(folder), device="cpu", quantization="4-bit")
    # quantization none: the folder's own quantization_config is left to transformers (not replaced)
    assert make_key(str(folder), device="cpu").quantization == "none"


# ---- dtype auto on GPUs without native bf16 --------------------------------------------------------------------


def _fake_gpus(monkeypatch, *capabilities: tuple[int, int]):
    """torch.cuda as on a machine with these GPUs (is_bf16_supported counts emulation, as real torch does)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(capabilities))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capabilities[device or 0])
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: including_emulation or capabilities[0][0] >= 8)
    monkeypatch.setattr(torch.version, "hip", None)


@pytest.mark.parametrize("capabilities,device,expected", [
    (((7, 5),), "cuda", "fp16"),          # T4 / RTX 20xx: bf16 only emulated
    (((7, 0),), "cuda", "fp16"),          # V100
    (((8, 0),), "cuda", "bf16"),          # A100
    (((8, 9),), "cuda", "bf16"),          # RTX 40xx
    (((8, 6), (7, 5)), "auto", "fp16"),   # multi-gpu: every GPU must have it
    (((8, 6), (9, 0)), "auto", "bf16"),
])
def test_dtype_auto_picks_fp16_without_native_bf16(monkeypatch, capabilities, device, expected):
    _fake_gpus(monkeypatch, *capabilities)
    assert opt.resolve_dtype("auto", device) == expected


def test_explicit_bf16_on_an_old_gpu_is_kept_with_a_warning(monkeypatch, caplog):
    _fake_gpus(monkeypatch, (7, 5))
    with caplog.at_level(logging.WARNING):
        assert opt.resolve_dtype("bf16", "cuda") == "bf16"
    assert any("emulated" in r.getMessage() for r in caplog.records)


# ---- attention with fp32 ---------------------------------------------------------------------------------------


def test_attention_auto_never_picks_flash_attention_for_fp32(monkeypatch):
    monkeypatch.setattr(opt, "flash_attn_available", lambda: True)
    assert opt.resolve_attention("auto", "cuda", "fp32") == "sdpa"
    assert opt.resolve_attention("auto", "cuda", "bf16") == "flash_attention_2"
    assert opt.resolve_attention("auto", "cuda", "fp16") == "flash_attention_2"
    assert opt.resolve_attention("auto", "cpu", "bf16") == "sdpa"


def test_explicit_flash_attention_with_fp32_falls_back_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(opt, "flash_attn_available", lambda: True)
    with caplog.at_level(logging.WARNING):
        assert opt.resolve_attention("flash_attention_2", "cuda", "fp32") == "sdpa"
    messages = [r.getMessage() for r in caplog.records if "flash_attention_2" in r.getMessage()]
    assert len(messages) == 1 and "fp32" in messages[0] and "bf16 or fp16" in messages[0]


def test_loader_key_on_a_t4_with_flash_attn(dense_path, monkeypatch):
    """The loader's own choices, wired together: T4 -> fp16 -> flash-attn allowed; fp32 -> sdpa."""
    _fake_gpus(monkeypatch, (7, 5))
    monkeypatch.setattr(opt, "flash_attn_available", lambda: True)
    auto = make_key(str(dense_path), device="cuda")
    assert (auto.dtype, auto.attention) == ("fp16", "flash_attention_2")
    fp32 = make_key(str(dense_path), device="cuda", dtype="fp32")
    assert (fp32.dtype, fp32.attention) == ("fp32", "sdpa")
