"""LoRA bad input: each refused with the input named and nothing applied; the node, the folder list and the CLI."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from qwen3vl_pack.loaders import lora
from qwen3vl_pack.loaders.backends.served import ServerBundle
from qwen3vl_pack.loaders.cache import load_model
from qwen3vl_pack.loaders.lora import with_adapter
from qwen3vl_pack.loaders.lora_files import list_adapter_folders
from qwen3vl_pack.loaders.tasks import ask
from qwen3vl_pack.nodes import comfy_services
from qwen3vl_pack.nodes.generate import Qwen3VLGenerate
from qwen3vl_pack.nodes.lora import NO_ADAPTERS, Qwen3VLLoraLoader
from qwen3vl_pack.tests.tiny_lora import ATTENTION_TARGETS, build_tiny_lora, edit_config
from qwen3vl_pack.utils.errors import InputError
from qwen3vl_pack.utils.presets import resolve_options

pytest.importorskip("peft", reason="peft is in requirements-test.txt; CI installs it")
pytestmark = pytest.mark.usefixtures("clean_cache")
ROOT = Path(__file__).resolve().parents[1]
GREEDY = resolve_options("Greedy", 3)


@pytest.fixture(scope="module")
def good(dense_path, tmp_path_factory) -> Path:
    return build_tiny_lora(dense_path, tmp_path_factory.mktemp("good") / "good", ATTENTION_TARGETS)


@pytest.fixture()
def bad(good, tmp_path) -> Path:
    folder = tmp_path / "bad"
    shutil.copytree(good, folder)
    return folder


def _base(dense_path):
    return load_model(str(dense_path), [], dtype="fp32", attention="sdpa", device="cpu")


def _rewrite(folder: Path, change) -> None:
    file = folder / "adapter_model.safetensors"
    state = load_file(str(file))
    save_file(change(state), str(file), metadata={"format": "pt"})


def _rename(old: str, new: str):
    return lambda state: {k.replace(old, new): v for k, v in state.items()}


def _first_a_narrower(state):
    key = sorted(k for k in state if "lora_A" in k)[0]
    return {**state, key: state[key][:, :32].clone()}


def _zero_b(state):
    return {k: torch.zeros_like(v) if "lora_B" in k else v for k, v in state.items()}


BAD = {  # name: (how to spoil the folder, input named, words in the message)
    "no config": (lambda f: (f / "adapter_config.json").unlink(), "lora", ["no adapter_config.json"]),
    "pickle weights": (lambda f: (f / "adapter_model.safetensors").rename(f / "adapter_model.bin"), "lora",
                       ["pickle", "adapter_model.bin", "safetensors"]),
    "no weights": (lambda f: (f / "adapter_model.safetensors").unlink(), "lora", ["no adapter_model.safetensors"]),
    "damaged weights": (lambda f: (f / "adapter_model.safetensors").write_bytes(b"\x00" * 40), "lora",
                        ["cannot be read"]),
    "rank not a number": (lambda f: edit_config(f, r="eight"), "lora", ["r must be a whole number", "'eight'"]),
    "alpha not a number": (lambda f: edit_config(f, lora_alpha=None), "lora", ["lora_alpha must be a number"]),
    "rank disagrees": (lambda f: edit_config(f, r=8), "lora", ["rank 8", "rank 4"]),
    "dora": (lambda f: edit_config(f, use_dora=True), "lora", ["DoRA", "merge"]),
    "not lora": (lambda f: edit_config(f, peft_type="IA3"), "lora", ["IA3 adapter"]),
    "another base (shape)": (lambda f: _rewrite(f, _first_a_narrower), "lora",
                             ["model.language_model.layers.0.self_attn", "[4, 32]", "64 inputs", "another base"]),
    "layout of another model": (lambda f: _rewrite(f, _rename(".model.language_model.", ".transformer.h.")), "lora",
                                ["match nothing", "base_model.model.transformer.h.layers.0.self_attn.k_proj.lora_A.weight",
                                 "model.language_model.layers.0", "(text)",
                                 "model.visual.blocks.0"]),
    "untrained (all lora_B zero)": (lambda f: _rewrite(f, _zero_b), "lora", ["every lora_B", "zero"]),
    "extra full weights": (lambda f: _rewrite(f, lambda s: {**s, "base_model.model.lm_head.weight": torch.ones(2, 2)}),
                           "lora", ["not LoRA A/B", "lm_head.weight"]),
    "non-linear target": (lambda f: _rewrite(f, _rename("layers.0.self_attn.q_proj", "layers.0.input_layernorm")),
                          "lora", ["input_layernorm", "linear layers only"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_adapter_is_refused_by_name_and_nothing_is_applied(case, bad, dense_path):
    spoil, input_name, words = BAD[case]
    spoil(bad)
    base = _base(dense_path)
    before = ask(base, "Describe.", GREEDY).token_ids
    with pytest.raises(InputError) as err:
        with_adapter(base, str(bad))
    message = str(err.value)
    assert message.startswith(f"{input_name}: "), message
    for word in words:
        assert word in message, (word, message)
    assert all(not m._forward_hooks for m in base.model.modules())
    assert ask(base, "Describe.", GREEDY).token_ids == before  # the next run works, on the plain model


@pytest.mark.parametrize("strength", [float("nan"), float("inf"), -0.5, 2.5, "1", True])
def test_bad_strength_is_refused(strength, good, dense_path):
    with pytest.raises(InputError, match=r"^strength: must be a number from 0 to 2"):
        with_adapter(_base(dense_path), str(good), strength=strength)


def test_served_model_gets_the_vllm_route(good):
    with pytest.raises(InputError, match="--enable-lora --lora-modules NAME="):
        with_adapter(ServerBundle("http://127.0.0.1:1/v1", "qwen"), str(good))


def test_missing_folder_names_where_it_looked(dense_path, tmp_path):
    with pytest.raises(InputError, match=r"^lora: no adapter folder named 'nope' \(looked in "):
        with_adapter(_base(dense_path), "nope", [str(tmp_path)])
    with pytest.raises(InputError, match=r"^lora: folder .* does not exist"):
        with_adapter(_base(dense_path), str(tmp_path / "gone"))
    with pytest.raises(InputError, match="it holds config.json: that is a model"):
        with_adapter(_base(dense_path), str(dense_path))


def test_changed_files_are_read_again(good, bad, dense_path):
    base = _base(dense_path)
    first = with_adapter(base, str(bad))
    build_tiny_lora(dense_path, bad, ATTENTION_TARGETS, seed=7)  # retrained into the same folder
    lora.forget(base)
    with pytest.raises(InputError, match="changed on disk after the LoRA node checked it"):
        ask(first, "Describe.", GREEDY)
    again = with_adapter(base, str(bad))
    assert again != first and ask(again, "Describe.", GREEDY).token_ids


def test_node_lists_folders_from_loras_and_llm(good, dense_path, tmp_path, monkeypatch):
    loras, llm = tmp_path / "loras", tmp_path / "LLM"
    shutil.copytree(good, loras / "style" / "v0-20251201" / "checkpoint-50")
    shutil.copytree(good, llm / "captioner")
    (loras / "sd15_style.safetensors").write_bytes(b"not a folder")
    monkeypatch.setattr(comfy_services, "lora_dirs", lambda: [str(loras), str(llm)])
    choices = Qwen3VLLoraLoader.INPUT_TYPES()["required"]["lora"][0]
    assert choices == ["captioner", "style/v0-20251201/checkpoint-50"]
    assert list_adapter_folders([str(tmp_path / "none")]) == []
    node = Qwen3VLLoraLoader()
    (bundle,) = node.apply(_base(dense_path), "style/v0-20251201/checkpoint-50", 0.75)
    assert bundle.adapters[0].strength == 0.75 and bundle.adapters[0].modules == 8
    _, _, info, _ = Qwen3VLGenerate().generate(bundle, "Describe.", "Greedy", 4)
    assert "model: alpha + LoRA checkpoint-50 (strength 0.75, 8 modules)" in info
    (by_path,) = node.apply(_base(dense_path), NO_ADAPTERS, 1.0, lora_path=f"  '{llm / 'captioner'}' ")
    assert by_path.adapters[0].path == str((llm / "captioner").resolve())
    with pytest.raises(InputError, match="^lora: no adapter chosen"):
        node.apply(_base(dense_path), NO_ADAPTERS, 1.0)
    with pytest.raises(InputError, match="^lora_path: folder"):
        node.apply(_base(dense_path), "captioner", 1.0, lora_path=str(tmp_path / "gone"))
    first = Qwen3VLLoraLoader.IS_CHANGED(lora="captioner", strength=1.0)
    edit_config(llm / "captioner", lora_dropout=0.05, note="retrained")
    assert Qwen3VLLoraLoader.IS_CHANGED(lora="captioner", strength=1.0) != first
    assert Qwen3VLLoraLoader.IS_CHANGED(lora="gone").startswith("unreadable")


def _cli(capsys, caplog, *args) -> tuple[int, str, str]:
    """The command line in this process (its plumbing is under test; tests/test_cli.py runs it as a program)."""
    from qwen3vl_pack.cli import main

    caplog.clear()
    code = main(list(args))
    return code, capsys.readouterr().out, caplog.text


def test_cli_lora(good, dense_path, tmp_path, capsys, caplog):
    common = ["ask", "--model", str(dense_path), "--preset", "Greedy", "--max-new-tokens", "6", "--info",
              "--dtype", "fp32", "--device", "cpu"]
    plain = _cli(capsys, caplog, *common, "Describe.")
    off = _cli(capsys, caplog, *common, "--lora", f"{good}:0", "Describe.")
    on = _cli(capsys, caplog, *common, "--lora", str(good), "--lora", f"{good}:0.5", "Describe.")
    assert plain[0] == off[0] == on[0] == 0
    answer = lambda out: out[1].split("model: ")[0]  # noqa: E731
    assert answer(off) == answer(plain) != answer(on)
    assert "+ LoRA good (strength 0, 8 modules)" in off[1]
    assert "+ LoRA good (strength 1, 8 modules) + LoRA good (strength 0.5, 8 modules)" in on[1]
    code, _, log = _cli(capsys, caplog, *common, "--lora", f"{good}:lots", "Describe.")
    assert code == 2 and "--lora: " in log and "'lots'" in log
    code, _, log = _cli(capsys, caplog, *common, "--lora", str(tmp_path / "gone"), "Describe.")
    assert code == 2 and "--lora: folder" in log
    code, _, log = _cli(capsys, caplog, "ask", "--server", "http://127.0.0.1:9/v1", "--lora", str(good), "hi")
    assert code == 2 and "--lora: applies to a local model" in log


def test_cli_caption_takes_lora(good, dense_path, tmp_path, capsys, caplog):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(ROOT / "assets" / "sample.png", images / "a.png")
    caplog.set_level(logging.INFO)
    common = ["caption", str(images), "--model", str(dense_path), "--max-new-tokens", "6", "--dtype", "fp32",
              "--device", "cpu", "--no-progress", "--preset", "Greedy"]
    code, _, log = _cli(capsys, caplog, *common, "--output-dir", str(tmp_path / "plain"))
    assert code == 0, log
    code, _, log = _cli(capsys, caplog, *common, "--output-dir", str(tmp_path / "lora"), "--lora", f"{good}:1.5")
    assert code == 0, log
    assert "LoRA good: 8 modules changed at strength 1.5" in log
    plain, tuned = ((tmp_path / d / "a.txt").read_text(encoding="utf-8") for d in ("plain", "lora"))
    assert plain != tuned


def test_cli_lora_layout_rewrites_a_text_layout_adapter_for_vllm(dense_path, tmp_path, capsys, caplog):
    text = build_tiny_lora(dense_path, tmp_path / "text", ATTENTION_TARGETS + ["qkv"], layout="text", seed=3)
    wrapper = build_tiny_lora(dense_path, tmp_path / "wrapper", ATTENTION_TARGETS + ["qkv"], seed=3)
    assert any(k.startswith("base_model.model.model.layers.") for k in load_file(str(text / "adapter_model.safetensors")))
    code, out, log = _cli(capsys, caplog, "lora-layout", str(text), str(tmp_path / "fixed"))
    assert code == 0, log
    assert "10 modules written" in out
    fixed = load_file(str(tmp_path / "fixed" / "adapter_model.safetensors"))
    expected = load_file(str(wrapper / "adapter_model.safetensors"))
    assert sorted(fixed) == sorted(expected) and all(torch.equal(fixed[k], expected[k]) for k in expected)
    code, _, log = _cli(capsys, caplog, "lora-layout", str(text), str(tmp_path / "fixed"))
    assert code == 2 and "output: " in log and "not empty" in log  # nothing overwritten
    _rewrite(text, _rename(".model.layers.", ".transformer.h."))
    code, _, log = _cli(capsys, caplog, "lora-layout", str(text), str(tmp_path / "other"))
    assert code == 2 and "adapter: " in log and "transformer.h.0" in log and not (tmp_path / "other").exists()
