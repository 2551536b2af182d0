"""Memory release (Unload node, ComfyUI /free hook, free-before-load) and the download node."""

from __future__ import annotations

import fnmatch
import gc
import shutil
import types
import weakref

import pytest

from qwen3vl_pack.loaders import cache, download
from qwen3vl_pack.loaders.cache import MODEL_CACHE, load_model
from qwen3vl_pack.nodes import comfy_services
from qwen3vl_pack.nodes.download import Qwen3VLDownloadModel
from qwen3vl_pack.nodes.memory import Qwen3VLUnload
from qwen3vl_pack.utils.errors import InputError, ModelLoadError

pytestmark = pytest.mark.usefixtures("clean_cache")


def test_unload_node_passes_value_and_frees_cache(dense_path):
    bundle = load_model(str(dense_path), device="cpu")
    ref = weakref.ref(bundle.model)
    value = {"anything": 1}
    (out,) = Qwen3VLUnload().unload(value)
    gc.collect()
    assert out is value and not MODEL_CACHE and ref() is None
    assert bundle.model is not None  # the next run reloads


def test_unload_node_accepts_any_type():
    from qwen3vl_pack.nodes.memory import ANY

    assert not (ANY != "IMAGE") and not (ANY != "STRING") and ANY == "*"


def test_comfy_unload_all_models_also_frees_pack_cache(dense_path, monkeypatch):
    calls = []
    fake_mm = types.SimpleNamespace(unload_all_models=lambda: calls.append("comfy"))
    monkeypatch.setattr(comfy_services, "model_management", fake_mm)
    comfy_services._hook_unload_all_models()
    comfy_services._hook_unload_all_models()  # idempotent: wrapped once
    load_model(str(dense_path), device="cpu")
    assert MODEL_CACHE
    fake_mm.unload_all_models()  # what ComfyUI's POST /free calls
    assert not MODEL_CACHE and calls == ["comfy"]
    assert fake_mm.unload_all_models._qwen3vl_hooked


def test_load_hook_runs_before_every_load_from_disk_reloads_included(dense_path):
    seen = []

    def hook(key, size):
        seen.append((key.device, size))

    cache.add_load_hook(hook)
    cache.add_load_hook(hook)  # once only
    try:
        bundle = load_model(str(dense_path), device="cpu")
        load_model(str(dense_path), device="cpu")  # hit: no load
        cache.unload(bundle.key)
        assert bundle.model is not None  # a reload (e.g. after Unload Models) runs the hook too
    finally:
        cache.remove_load_hook(hook)
    expected = sum(p.stat().st_size for p in dense_path.glob("*.safetensors"))
    assert seen == [("cpu", expected)] * 2 and expected > 0


def test_keep_loaded_wins_over_a_loader_that_frees(dense_path):
    from qwen3vl_pack.loaders.tasks import ask
    from qwen3vl_pack.utils.presets import resolve_options

    kept = load_model(str(dense_path), device="cpu", keep_loaded=True)
    freeing = load_model(str(dense_path), device="cpu", keep_loaded=False)
    ask(freeing, "hi", resolve_options("Greedy", 2))
    assert kept.key in MODEL_CACHE  # the other graph branch still has its model


def test_loader_node_installs_comfy_hooks_on_first_load_not_at_import(dense_path, monkeypatch):
    from qwen3vl_pack.nodes.loader import Qwen3VLModelLoader

    calls = []
    fake_mm = types.SimpleNamespace(unload_all_models=lambda: calls.append("comfy"), free_memory=None,
                                    get_torch_device=lambda: types.SimpleNamespace(type="cpu"))
    monkeypatch.setattr(comfy_services, "model_management", fake_mm)
    assert not getattr(fake_mm.unload_all_models, "_qwen3vl_hooked", False)
    try:
        Qwen3VLModelLoader().load("", "fp32", "sdpa", "none", "cpu", True, model_path=str(dense_path))
        assert fake_mm.unload_all_models._qwen3vl_hooked
        assert comfy_services._free_before_load in cache._LOAD_HOOKS
    finally:
        cache.remove_load_hook(comfy_services._free_before_load)


def test_free_device_memory_asks_comfyui_on_cuda(monkeypatch):
    calls = []
    monkeypatch.setattr(comfy_services, "model_management", types.SimpleNamespace(
        free_memory=lambda size, dev: calls.append((size, dev)), get_torch_device=lambda: "cuda:0"))
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    comfy_services.free_device_memory(10**9, "cuda")
    assert calls == [(10**9, "cuda:0")]


def test_free_device_memory_is_a_noop_on_cpu(monkeypatch):
    calls = []
    monkeypatch.setattr(comfy_services, "model_management",
                        types.SimpleNamespace(free_memory=lambda *a: calls.append(a), get_torch_device=lambda: "cpu"))
    comfy_services.free_device_memory(10**9, "cpu")
    assert calls == []


def _no_network(**kwargs):
    raise AssertionError("must not reach the network")


def test_download_skips_a_complete_folder(dense_path, tmp_path, monkeypatch):
    import huggingface_hub

    shutil.copytree(dense_path, tmp_path / "Qwen3-VL-2B-Instruct")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", _no_network)
    monkeypatch.setattr(comfy_services, "llm_dirs", lambda: [str(tmp_path)])
    (path,) = Qwen3VLDownloadModel().download("Qwen/Qwen3-VL-2B-Instruct")
    assert path == str(tmp_path / "Qwen3-VL-2B-Instruct")
    assert load_model(path, device="cpu").family == "qwen3_vl"


def test_download_offline_says_where_to_put_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as err:
        download.download_model("Qwen/Qwen3-VL-4B-Instruct", tmp_path)
    msg = str(err.value)
    assert msg.startswith("repo_id: cannot reach the Hugging Face Hub")
    assert str(tmp_path / "Qwen3-VL-4B-Instruct") in msg and "by hand" in msg


def test_download_fetches_safetensors_never_pickles(dense_path, tmp_path, monkeypatch):
    import huggingface_hub

    hub_files = [p.name for p in dense_path.iterdir()] + ["pytorch_model.bin", "model.pt", "weights.pth"]
    seen = {}

    def fake_snapshot(repo_id, revision, local_dir, allow_patterns):
        seen.update(repo_id=repo_id, revision=revision)
        for name in hub_files:
            if any(fnmatch.fnmatch(name, pat) for pat in allow_patterns):
                src = dense_path / name
                if src.exists():
                    shutil.copy(src, f"{local_dir}/{name}")
                else:
                    raise AssertionError(f"pickle file {name} would be downloaded")
        return local_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    path = download.download_model("someone/My-Qwen3-VL-Finetune", tmp_path, revision="v1", input_name="custom_repo_id")
    assert path == tmp_path / "My-Qwen3-VL-Finetune" and seen == {"repo_id": "someone/My-Qwen3-VL-Finetune",
                                                                   "revision": "v1"}
    assert not list(path.glob("*.bin")) and list(path.glob("*.safetensors"))


@pytest.mark.parametrize("repo", ["", "no-slash", "../../etc/passwd", "a/../b", "a b/c"])
def test_download_bad_repo_id(repo, tmp_path):
    with pytest.raises(InputError, match="^repo_id: "):
        download.download_model(repo, tmp_path)


def test_download_without_comfyui_dirs_is_clear(monkeypatch):
    monkeypatch.setattr(comfy_services, "llm_dirs", lambda: [])
    with pytest.raises(InputError, match="^repo_id: no ComfyUI models/LLM folder"):
        Qwen3VLDownloadModel().download("Qwen/Qwen3-VL-2B-Instruct")


def test_cache_module_has_no_network_imports():
    import inspect

    for mod in (cache, comfy_services):
        assert "huggingface_hub" not in inspect.getsource(mod)
