"""model_path and model names from another machine: ComfyUI's list check is skipped (VALIDATE_INPUTS on the
loader); a folder that is not there is still a clear error, listing the folders found."""

from __future__ import annotations

import inspect

import pytest

from qwen3vl_pack.nodes import comfy_services as comfy
from qwen3vl_pack.nodes.loader import Qwen3VLModelLoader
from qwen3vl_pack.utils.errors import ModelLoadError

pytestmark = pytest.mark.usefixtures("clean_cache")
SETTINGS = dict(dtype="fp32", attention="sdpa", quantization="none", device="cpu", keep_loaded=True)


def test_validate_inputs_takes_model_so_comfyui_skips_its_list_check():
    """ComfyUI 0.3.64 (execution.validate_inputs) checks a combo against its list unless VALIDATE_INPUTS
    names that input among its arguments."""
    validate = Qwen3VLModelLoader.VALIDATE_INPUTS
    assert "model" in inspect.getfullargspec(validate).args
    assert validate(model="Qwen3-VL-2B-Instruct") is True  # in no list here: accepted, checked at run time
    assert validate(model=comfy.NO_MODELS) is True
    assert isinstance(validate(model=None), str)


def test_model_path_works_with_an_empty_models_folder(dense_path, tmp_path, monkeypatch):
    monkeypatch.setattr(comfy, "llm_dirs", lambda: [str(tmp_path)])  # an empty models/LLM
    assert Qwen3VLModelLoader.INPUT_TYPES()["required"]["model"][0] == [comfy.NO_MODELS]
    (bundle,) = Qwen3VLModelLoader().load(comfy.NO_MODELS, **SETTINGS, model_path=str(dense_path))
    assert bundle.path == str(dense_path.resolve())
    (other,) = Qwen3VLModelLoader().load("Qwen3-VL-2B-Instruct", **SETTINGS, model_path=f"  {dense_path}  ")
    assert other.key == bundle.key  # a model chosen on another machine is overridden by model_path


def test_missing_model_without_model_path_lists_the_folders_found(dense_path, tmp_path, monkeypatch):
    monkeypatch.setattr(comfy, "llm_dirs", lambda: [str(dense_path.parent)])
    with pytest.raises(ModelLoadError, match="^model: no folder named 'Qwen3-VL-2B-Instruct'") as err:
        Qwen3VLModelLoader().load("Qwen3-VL-2B-Instruct", **SETTINGS)
    assert f"folders found: alpha, beta (in {dense_path.parent})" in str(err.value)  # the dense and MoE folders
    monkeypatch.setattr(comfy, "llm_dirs", lambda: [str(tmp_path)])
    with pytest.raises(ModelLoadError, match="^model: no model chosen; no model folder found") as err:
        Qwen3VLModelLoader().load(comfy.NO_MODELS, **SETTINGS)
    assert str(tmp_path) in str(err.value) and "model_path" in str(err.value)
