"""Qwen3.5 in the loader: the family from config.json (a table row), the transformers >= 5.2 refusal (runs on the
4.57 leg as it is, on 5.x with the installed version patched down), text-only folders, ids from the config."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from qwen3vl_pack.loaders import families
from qwen3vl_pack.loaders.cache import MODEL_CACHE, load_model
from qwen3vl_pack.loaders.download import OFFICIAL_REPOS
from qwen3vl_pack.loaders.families import FAMILY_TABLE
from qwen3vl_pack.loaders.resolve import read_family
from qwen3vl_pack.tests.tiny_qwen35 import has_qwen35
from qwen3vl_pack.utils.errors import ModelLoadError

pytestmark = pytest.mark.usefixtures("clean_cache")


def _config_only(tmp_path, model_type: str, vision: bool = True):
    folder = tmp_path / model_type
    folder.mkdir()
    config = {"model_type": model_type, "text_config": {"hidden_size": 64}}
    if vision:
        config["vision_config"] = {"depth": 2}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def test_family_table_rows():
    assert set(FAMILY_TABLE) == {"qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe"}
    assert [t for t, f in FAMILY_TABLE.items() if f.moe] == ["qwen3_vl_moe", "qwen3_5_moe"]
    assert [t for t, f in FAMILY_TABLE.items() if f.thinking_switch] == ["qwen3_5", "qwen3_5_moe"]
    assert {f.min_transformers for t, f in FAMILY_TABLE.items() if t.startswith("qwen3_5")} == {(5, 2)}
    assert all(f.class_name.endswith("ForConditionalGeneration") for f in FAMILY_TABLE.values())


@pytest.mark.skipif(has_qwen35(), reason="this transformers has Qwen3.5: the patched-version test covers it")
@pytest.mark.parametrize("model_type", ["qwen3_5", "qwen3_5_moe"])
def test_old_transformers_refuses_qwen35_naming_the_version(tmp_path, model_type):
    import transformers

    with pytest.raises(ModelLoadError, match=r"^model: Qwen3\.5.* needs transformers >= 5\.2; this Python has "
                                             rf"transformers {transformers.__version__}") as err:
        load_model(str(_config_only(tmp_path, model_type)))
    assert 'pip install "transformers>=5.2"' in str(err.value)
    assert not MODEL_CACHE


@pytest.mark.parametrize("model_type", ["qwen3_5", "qwen3_5_moe"])
def test_refusal_below_5_2_with_the_version_patched_down(tmp_path, monkeypatch, model_type):
    monkeypatch.setattr(families, "transformers_version", lambda: (5, 1))
    with pytest.raises(ModelLoadError, match=r"needs transformers >= 5\.2") as err:
        read_family(_config_only(tmp_path, model_type))
    assert FAMILY_TABLE[model_type].class_name in str(err.value)
    monkeypatch.setattr(families, "transformers_version", lambda: (5, 2))
    assert read_family(tmp_path / model_type) == model_type


def test_unknown_model_type_is_refused_with_the_list(tmp_path):
    with pytest.raises(ModelLoadError, match="model_type 'qwen2_5_vl', which is not Qwen3-VL or Qwen3.5") as err:
        read_family(_config_only(tmp_path, "qwen2_5_vl"))
    for known in FAMILY_TABLE:
        assert repr(known) in str(err.value)


@pytest.mark.parametrize("model_type", ["qwen3_5_text", "qwen3_5_moe_text"])
def test_text_only_model_type_is_refused(tmp_path, model_type):
    with pytest.raises(ModelLoadError, match="text-only conversion without the vision tower"):
        read_family(_config_only(tmp_path, model_type))


def test_config_without_vision_config_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="has no vision_config: the vision tower is missing"):
        read_family(_config_only(tmp_path, "qwen3_vl", vision=False))


def test_download_node_lists_official_qwen35_repositories():
    assert OFFICIAL_REPOS[0] == "Qwen/Qwen3-VL-2B-Instruct"  # saved workflows keep their default
    for repo in ("Qwen/Qwen3.5-0.8B", "Qwen/Qwen3.5-9B", "Qwen/Qwen3.5-27B", "Qwen/Qwen3.5-35B-A3B",
                 "Qwen/Qwen3.5-397B-A17B", "Qwen/Qwen3.5-35B-A3B-FP8", "Qwen/Qwen3.6-35B-A3B", "Qwen/Qwen3.8-27B"):
        assert repo in OFFICIAL_REPOS
    assert len(set(OFFICIAL_REPOS)) == len(OFFICIAL_REPOS)


# ---- on transformers >= 5.2: the tiny Qwen3.5 folders ----

def test_qwen35_family_and_class_from_config(qwen35_models):
    import transformers

    dense = load_model(str(qwen35_models["dense"]), device="cpu")
    moe = load_model(str(qwen35_models["moe"]), device="cpu")
    assert type(dense.model) is transformers.Qwen3_5ForConditionalGeneration and dense.family == "qwen3_5"
    assert type(moe.model) is transformers.Qwen3_5MoeForConditionalGeneration and moe.family == "qwen3_5_moe"
    assert type(dense.processor).__name__ == "Qwen3VLProcessor"
    assert dense.model.model.visual is not None  # the vision tower is there (never AutoModelForCausalLM)
    layer_types = dense.model.config.text_config.layer_types
    assert layer_types.count("linear_attention") == 3 and layer_types.count("full_attention") == 1


def test_qwen35_ids_differ_from_qwen3vl_and_come_from_the_config(qwen35_models, tiny_models):
    q35 = json.loads((qwen35_models["dense"] / "config.json").read_text())
    qvl = json.loads((tiny_models["dense"] / "config.json").read_text())
    keys = ("image_token_id", "video_token_id", "vision_start_token_id")
    assert all(q35[k] != qvl[k] for k in keys)
    bundle = load_model(str(qwen35_models["dense"]), device="cpu")
    tok = bundle.processor.tokenizer
    assert tok.convert_tokens_to_ids("<|image_pad|>") == q35["image_token_id"] == bundle.processor.image_token_id


def test_qwen35_folder_without_vision_weights_is_refused(qwen35_models, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "textonly"
    shutil.copytree(qwen35_models["dense"], folder)
    weights = load_file(folder / "model.safetensors")
    kept = {k: v for k, v in weights.items() if ".visual." not in f".{k}"}
    assert len(kept) < len(weights)
    save_file(kept, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match=r"no vision-tower weights \(no model\.visual\.\* tensor"):
        load_model(str(folder), device="cpu")
    assert not MODEL_CACHE


def test_qwen35_moe_refuses_bitsandbytes_with_the_counted_share(qwen35_models):
    from qwen3vl_pack.loaders.options import check_quantization
    from qwen3vl_pack.utils.errors import InputError

    with pytest.raises(InputError, match=r"does not shrink Qwen3\.5 MoE models.*4\.0 %"):
        check_quantization("4-bit", "qwen3_5_moe")
    check_quantization("none", "qwen3_5_moe")


def test_real_qwen35_35b_a3b_bitsandbytes_share_on_meta():
    """What bitsandbytes would quantize in the public Qwen3.5-35B-A3B config, counted on the meta device."""
    if not has_qwen35():
        pytest.skip("transformers < 5.2 has no Qwen3.5")
    from qwen3vl_pack.tests.quant_share import count_share, meta_model, real_qwen35_35b_a3b_config

    model = meta_model(real_qwen35_35b_a3b_config())
    share = count_share(model)
    assert 34e9 < share.total < 36e9
    assert 0.03 < share.fraction < 0.05  # the fused experts (3-D parameters) stay in bf16
    assert round(share.gib(4), 1) == 63.4 and round(share.gib(16), 1) == 65.4
    assert all(p.device == torch.device("meta") for p in model.parameters())
