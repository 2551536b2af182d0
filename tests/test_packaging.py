"""Registry metadata and requirements: what ComfyUI-Manager and the Comfy Registry read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")
ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_requirements_never_pull_torch():
    names = {_name(r) for r in _requirements()}
    assert not names & {"torch", "torchvision", "torchaudio"}
    assert "transformers" in names


def test_pyproject_registry_fields_and_dependencies_match_requirements():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    project, comfy = data["project"], data["tool"]["comfy"]
    for key in ("name", "version", "description", "license", "dependencies", "urls"):
        assert project.get(key), key
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert (ROOT / project["license"]["file"]).is_file()
    for key in ("PublisherId", "DisplayName", "Icon"):
        assert comfy.get(key), key
    assert sorted(project["dependencies"]) == sorted(_requirements())
    assert "flash" in project["optional-dependencies"] and "quant" in project["optional-dependencies"]
    assert comfy["Icon"].endswith("assets/icon.png") and (ROOT / "assets" / "icon.png").is_file()
