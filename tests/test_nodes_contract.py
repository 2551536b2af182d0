"""Node contract: ids, tooltips, descriptions; layers import without ComfyUI."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from qwen3vl_pack import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

ROOT = Path(__file__).resolve().parents[1]


def test_public_node_ids():
    assert {"Qwen3VL_ModelLoader", "Qwen3VL_Generate"} <= set(NODE_CLASS_MAPPINGS)
    assert set(NODE_DISPLAY_NAME_MAPPINGS) == set(NODE_CLASS_MAPPINGS)
    loader, gen = NODE_CLASS_MAPPINGS["Qwen3VL_ModelLoader"], NODE_CLASS_MAPPINGS["Qwen3VL_Generate"]
    assert loader.RETURN_TYPES == ("QWEN3VL_MODEL",) and loader.RETURN_NAMES == ("model",)
    assert gen.RETURN_TYPES == ("STRING", "STRING", "STRING", "QWEN3VL_CHAT")
    assert gen.RETURN_NAMES == ("text", "thinking", "info", "chat")
    req = gen.INPUT_TYPES()["required"]
    assert list(req) == ["model", "prompt", "preset", "max_new_tokens"]
    assert req["preset"][0] == ["VL", "Text", "Thinking", "Greedy", "Qwen3.5 Thinking"]  # new names go last
    opt = gen.INPUT_TYPES()["optional"]
    assert list(opt) == ["system_prompt", "image", "min_visual_tokens", "max_visual_tokens", "chat", "video",
                         "video_fps", "sampling", "video_options", "thinking"]
    assert opt["chat"][0] == "QWEN3VL_CHAT" and opt["video"][0] == "IMAGE" and opt["video_fps"][0] == "FLOAT"
    assert opt["sampling"][0] == "QWEN3VL_SAMPLING" and opt["video_options"][0] == "QWEN3VL_VIDEO_OPTIONS"
    sampling, video = NODE_CLASS_MAPPINGS["Qwen3VL_Sampling"], NODE_CLASS_MAPPINGS["Qwen3VL_VideoOptions"]
    assert sampling.RETURN_TYPES == ("QWEN3VL_SAMPLING",) and video.RETURN_TYPES == ("QWEN3VL_VIDEO_OPTIONS",)
    assert list(sampling.INPUT_TYPES()["required"]) == ["temperature", "top_p", "top_k", "repetition_penalty",
                                                        "presence_penalty", "seed"]
    assert list(video.INPUT_TYPES()["required"]) == ["sample_fps", "max_frames", "max_video_frame_tokens"]
    for node_id in ("Qwen3VL_Grounding", "Qwen3VL_BatchCaption"):  # one Sampling node serves all three
        inputs = NODE_CLASS_MAPPINGS[node_id].INPUT_TYPES()
        assert inputs["optional"]["sampling"][0] == "QWEN3VL_SAMPLING" and "seed" not in inputs["required"]
    for node_id, default in (("Qwen3VL_Generate", "auto"), ("Qwen3VL_Grounding", "off"),
                             ("Qwen3VL_BatchCaption", "off"), ("Qwen3VL_Task", "off")):
        optional = NODE_CLASS_MAPPINGS[node_id].INPUT_TYPES()["optional"]
        assert list(optional)[-1] == "thinking", node_id  # the thinking switch is the LAST optional input
        assert optional["thinking"][0] == ["auto", "on", "off"] and optional["thinking"][1]["default"] == default
    linputs = loader.INPUT_TYPES()
    assert list(linputs["required"]) == ["model", "dtype", "attention", "quantization", "device", "keep_loaded"]
    assert list(linputs["optional"]) == ["model_path", "trust_remote_code"]


@pytest.mark.parametrize("node_id", sorted(NODE_CLASS_MAPPINGS))
def test_every_node_documents_every_input_and_output(node_id):
    cls = NODE_CLASS_MAPPINGS[node_id]
    assert isinstance(getattr(cls, "DESCRIPTION", None), str) and len(cls.DESCRIPTION) > 20, node_id
    for attr in ("RETURN_TYPES", "FUNCTION", "CATEGORY"):
        assert getattr(cls, attr, None), f"{node_id} lacks {attr}"
    assert callable(getattr(cls, cls.FUNCTION))
    tips = getattr(cls, "OUTPUT_TOOLTIPS", ())
    assert len(tips) == len(cls.RETURN_TYPES) and all(isinstance(t, str) and t for t in tips), node_id
    if getattr(cls, "RETURN_NAMES", None):
        assert len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES)
    for section, inputs in cls.INPUT_TYPES().items():
        if section == "hidden":
            continue
        for name, spec in inputs.items():
            opts = spec[1] if len(spec) > 1 else {}
            assert opts.get("tooltip"), f"{node_id}.{name} has no tooltip"


_ISOLATION = """
import importlib.abc, importlib.util, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('folder_paths', 'comfy', 'comfy_execution', 'server', 'nodes', 'execution'):
            raise ImportError('ComfyUI is not here: ' + name)
sys.meta_path.insert(0, Block())
root = sys.argv[1]
spec = importlib.util.spec_from_file_location('p', root + '/__init__.py', submodule_search_locations=[root])
sys.modules['p'] = importlib.util.module_from_spec(spec)
for mod in ('utils.images', 'utils.presets', 'utils.text', 'utils.messages', 'utils.sampling', 'utils.feedback',
            'utils.node_options',
            'loaders.cache', 'loaders.engine', 'loaders.tasks', 'loaders.resolve', 'loaders.options'):
    importlib.import_module('p.' + mod)
bad = [m for m in sys.modules if m.split('.')[0] in ('folder_paths', 'comfy')]
assert not bad, bad
import p.nodes as n   # nodes import too, with fallbacks
assert n.comfy_services.folder_paths is None and n.comfy_services.llm_dirs() == []
assert n.comfy_services.PromptServer is None and n.comfy_services.running_node_id() is None
n.comfy_services.show_text('no ComfyUI: nothing to show')
print('ok')
"""


def test_layers_import_without_comfyui():
    out = subprocess.run([sys.executable, "-c", _ISOLATION, str(ROOT)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def _imports(path: Path) -> set[str]:
    """Every module a file imports (relative ones as written, e.g. '..loaders.cache')."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
    return found


@pytest.mark.parametrize("layer,forbidden", [
    ("utils", ("transformers", "accelerate", "bitsandbytes", "huggingface_hub", "comfy", "folder_paths", "server",
               "..loaders", "..nodes")),
    ("loaders", ("comfy", "folder_paths", "server", "..nodes")),
])
def test_layers_import_one_way(layer, forbidden):
    """utils/ <- loaders/ <- nodes/: no import goes the other way, and only nodes/ touches ComfyUI."""
    for path in (ROOT / layer).glob("*.py"):
        for module in _imports(path):
            assert not any(module == f or module.startswith(f + ".") for f in forbidden), (path.name, module)
