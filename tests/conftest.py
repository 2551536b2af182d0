"""Test bed: the pack imported as a package (as ComfyUI does) and tiny random Qwen3-VL folders."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
PACK = "qwen3vl_pack"


def _import_pack():
    if PACK in sys.modules:
        return sys.modules[PACK]
    spec = importlib.util.spec_from_file_location(PACK, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = module
    spec.loader.exec_module(module)
    return module


_import_pack()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny dense and MoE Qwen3-VL folders whose names say nothing about the family."""
    from qwen3vl_pack.tests.tiny_model import build_tiny_model

    base = tmp_path_factory.mktemp("models")
    return {"dense": build_tiny_model(base / "alpha", "dense"), "moe": build_tiny_model(base / "beta", "moe")}


@pytest.fixture(scope="session")
def dense_path(tiny_models) -> Path:
    return tiny_models["dense"]


@pytest.fixture(scope="session")
def moe_path(tiny_models) -> Path:
    return tiny_models["moe"]


@pytest.fixture()
def dense(dense_path):
    """The dense tiny model, loaded through the cache (fp32, sdpa, cpu)."""
    from qwen3vl_pack.loaders.cache import load_model

    return load_model(str(dense_path), [], dtype="fp32", attention="sdpa", device="cpu")


@pytest.fixture(scope="session")
def thinking_path(tmp_path_factory) -> Path:
    """A tiny dense Qwen3-VL with the real Thinking chat template (its prompt ends inside an open <think>)."""
    from qwen3vl_pack.tests.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("thinking") / "gamma", "dense", thinking=True)


@pytest.fixture()
def thinking(thinking_path):
    """The Thinking tiny model, loaded through the cache (fp32, sdpa, cpu)."""
    from qwen3vl_pack.loaders.cache import load_model

    return load_model(str(thinking_path), [], dtype="fp32", attention="sdpa", device="cpu")


@pytest.fixture()
def clean_cache():
    from qwen3vl_pack.loaders.cache import unload_all

    unload_all()
    yield
    unload_all()


@pytest.fixture(scope="session")
def qwen35_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny dense and MoE Qwen3.5 folders (tests/tiny_qwen35.py); skipped where transformers < 5.2 has no Qwen3.5
    (there the loader's refusal is tested instead, tests/test_qwen35_loader.py)."""
    from qwen3vl_pack.tests.tiny_qwen35 import build_tiny_qwen35, has_qwen35

    if not has_qwen35():
        pytest.skip("transformers < 5.2 has no Qwen3.5 (the refusal is tested instead)")
    base = tmp_path_factory.mktemp("qwen35")
    return {"dense": build_tiny_qwen35(base / "gamma"), "moe": build_tiny_qwen35(base / "delta", moe=True),
            "small": build_tiny_qwen35(base / "epsilon", small_template=True)}


@pytest.fixture(params=["dense", "moe"])
def qwen35(request, qwen35_models):
    """Each tiny Qwen3.5 (dense, MoE), loaded through the cache (fp32, sdpa, cpu)."""
    from qwen3vl_pack.loaders.cache import load_model

    return load_model(str(qwen35_models[request.param]), [], dtype="fp32", attention="sdpa", device="cpu")


@pytest.fixture()
def fast_served(monkeypatch):
    """Served-client tests: retries back off in 10 ms, and no answer is remembered across tests."""
    from qwen3vl_pack.loaders.backends import openai_client, served

    monkeypatch.setattr(openai_client, "RETRY_BASE_DELAY", 0.01)
    served.forget_answers()
    yield
    served.forget_answers()
