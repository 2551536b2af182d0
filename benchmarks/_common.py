"""Shared set-up for benchmarks: import the pack as a package and build a tiny model."""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def import_pack(name: str = "qwen3vl_pack"):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def tiny_model(family: str = "dense") -> Path:
    import_pack()
    from qwen3vl_pack.tests.tiny_model import build_tiny_model

    path = Path(tempfile.mkdtemp(prefix="qwen3vl-bench-")) / f"tiny-{family}"
    return build_tiny_model(path, family)
