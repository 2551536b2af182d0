"""The bad-input suite: every node and the CLI, one case per row.

Each refused case asserts the error type, that the message starts with the input's name and
carries advice, and then that the cached model and the next normal call still work. Accepted
cases (inputs the pack repairs or documents) assert what they turn into.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qwen3vl_pack.loaders.cache import MODEL_CACHE, load_model
from qwen3vl_pack.loaders.download import download_model
from qwen3vl_pack.nodes.caption import Qwen3VLBatchCaption, Qwen3VLLoadImageFolder, Qwen3VLSaveCaptions
from qwen3vl_pack.nodes.generate import Qwen3VLGenerate
from qwen3vl_pack.nodes.grounding import Qwen3VLGrounding, Qwen3VLParseGrounding
from qwen3vl_pack.nodes.loader import Qwen3VLModelLoader
from qwen3vl_pack.nodes.option_nodes import Qwen3VLSampling, Qwen3VLVideoOptions
from qwen3vl_pack.utils.errors import InputError, ModelLoadError
from qwen3vl_pack.utils.messages import Chat

ROOT = Path(__file__).resolve().parents[1]
GEN = Qwen3VLGenerate()


def _img(b=1, h=48, w=64, c=3):
    return torch.rand(b, h, w, c)


def _gen(m, **kw):
    args = dict(prompt="Describe.", preset="Greedy", max_new_tokens=2)
    args.update(kw)
    return GEN.generate(m, **args)


def _sampling(**kw):
    args = dict(temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.0, presence_penalty=1.5, seed=0)
    args.update(kw)
    return Qwen3VLSampling().settings(**args)[0]


def _loader(path, **kw):
    args = dict(model="", dtype="auto", attention="sdpa", quantization="none", device="cpu", keep_loaded=True,
                model_path=str(path))
    args.update(kw)
    return Qwen3VLModelLoader().load(**args)[0]


def _broken_copy(src: Path, dst: Path, how: str) -> Path:
    shutil.copytree(src, dst)
    if how == "no_config":
        (dst / "config.json").unlink()
    elif how == "corrupt_config":
        (dst / "config.json").write_text("{\"model_type\": ", encoding="utf-8")
    elif how == "wrong_type":
        cfg = json.loads((dst / "config.json").read_text())
        cfg["model_type"] = "llava"
        (dst / "config.json").write_text(json.dumps(cfg))
    elif how == "pickle_only":
        (dst / "model.safetensors").rename(dst / "pytorch_model.bin")
    elif how == "no_tokenizer":
        for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
            (dst / name).unlink(missing_ok=True)
    return dst


def _folder(path):
    return Qwen3VLLoadImageFolder().load(str(path), False, ".png,.jpg", "natural", 0, 0, False)


def _empty_dir(path: Path) -> Path:
    path.mkdir()
    (path / "notes.txt").write_text("not an image", encoding="utf-8")
    return path


def _save(captions, paths, output_dir="", extension=".txt"):
    return Qwen3VLSaveCaptions().save(captions, [str(x) for x in paths], ["skip"], [extension], [output_dir])


# (case id, callable(model, dense_path, tmp_path), error type, input name)
REFUSED = [
    ("image_5_channels", lambda m, p, t: _gen(m, image=_img(c=5)), InputError, "image"),
    ("image_empty_batch", lambda m, p, t: _gen(m, image=_img(b=0)), InputError, "image"),
    ("image_nan", lambda m, p, t: _gen(m, image=_img().fill_(float("nan"))), InputError, "image"),
    ("image_inf", lambda m, p, t: _gen(m, image=_img().fill_(float("inf"))), InputError, "image"),
    ("image_too_elongated", lambda m, p, t: _gen(m, image=_img(h=3, w=5000)), InputError, "image"),
    ("grounding_image_too_elongated", lambda m, p, t: Qwen3VLGrounding().ground(
        m, _img(h=5000, w=3), "cat", "boxes", 8, "Greedy"), InputError, "image"),
    ("prompt_empty_no_image", lambda m, p, t: _gen(m, prompt="  "), InputError, "prompt"),
    ("max_new_tokens_0", lambda m, p, t: _gen(m, max_new_tokens=0), InputError, "max_new_tokens"),
    ("max_new_tokens_past_context", lambda m, p, t: _gen(m, max_new_tokens=10**6), InputError, "max_new_tokens"),
    ("sampling_temperature_0", lambda m, p, t: _sampling(temperature=0.0), InputError, "temperature"),
    ("sampling_top_p_0", lambda m, p, t: _sampling(top_p=0.0), InputError, "top_p"),
    ("sampling_top_k_negative", lambda m, p, t: _sampling(top_k=-1), InputError, "top_k"),
    ("sampling_seed_negative", lambda m, p, t: _sampling(seed=-1), InputError, "seed"),
    ("sampling_not_from_the_sampling_node", lambda m, p, t: _gen(m, sampling={"temperature": 2}), InputError,
     "sampling"),
    ("preset_custom_is_the_sampling_node_now", lambda m, p, t: _gen(m, preset="Custom"), InputError, "preset"),
    ("visual_tokens_min_over_max", lambda m, p, t: _gen(m, image=_img(), min_visual_tokens=64, max_visual_tokens=8),
     InputError, "min_visual_tokens"),
    ("video_0_frames", lambda m, p, t: _gen(m, video=torch.rand(0, 32, 32, 3), video_fps=30.0), InputError, "video"),
    ("video_fps_0", lambda m, p, t: _gen(m, video=torch.rand(4, 32, 32, 3), video_fps=0.0), InputError, "video_fps"),
    ("max_frames_0", lambda m, p, t: Qwen3VLVideoOptions().options(2.0, 0, 256), InputError, "max_frames"),
    ("sample_fps_0", lambda m, p, t: Qwen3VLVideoOptions().options(0.0, 8, 256), InputError, "sample_fps"),
    ("video_options_not_from_the_node", lambda m, p, t: _gen(m, video=torch.rand(4, 32, 32, 3), video_fps=30.0,
                                                             video_options={"max_frames": 2}), InputError,
     "video_options"),
    ("chat_not_a_conversation", lambda m, p, t: _gen(m, chat="hello"), InputError, "chat"),
    ("loader_folder_missing", lambda m, p, t: _loader(t / "missing"), ModelLoadError, "model_path"),
    ("loader_no_config", lambda m, p, t: _loader(_broken_copy(p, t / "a", "no_config")), ModelLoadError, "model_path"),
    ("loader_corrupt_config", lambda m, p, t: _loader(_broken_copy(p, t / "b", "corrupt_config")), ModelLoadError,
     "model_path"),
    ("loader_wrong_model_type", lambda m, p, t: _loader(_broken_copy(p, t / "c", "wrong_type")), ModelLoadError,
     "model_path"),
    ("loader_pickle_only", lambda m, p, t: _loader(_broken_copy(p, t / "d", "pickle_only")), ModelLoadError,
     "model_path"),
    ("loader_tokenizer_missing", lambda m, p, t: _loader(_broken_copy(p, t / "e", "no_tokenizer")), ModelLoadError,
     "model_path"),
    ("loader_cuda_on_cpu_machine", lambda m, p, t: _loader(p, device="cuda"), InputError, "device"),
    ("loader_nothing_chosen", lambda m, p, t: _loader("", model="(no Qwen3-VL folder found in models/LLM)"),
     ModelLoadError, "model"),
    ("grounding_empty_target", lambda m, p, t: Qwen3VLGrounding().ground(m, _img(), "  ", "boxes", 8, "Greedy"),
     InputError, "target"),
    ("grounding_bad_index", lambda m, p, t: Qwen3VLParseGrounding().parse(
        '[{"bbox_2d": [0, 0, 500, 500], "label": "a"}]', _img(), "qwen3", index="x-y"), InputError, "index"),
    ("grounding_text_for_wrong_batch", lambda m, p, t: Qwen3VLParseGrounding().parse(
        "=== image 1 ===\n[]\n=== image 2 ===\n[]", _img(b=3), "qwen3"), InputError, "text"),
    ("download_bad_repo_id", lambda m, p, t: download_model("../../etc", t), InputError, "repo_id"),
    ("caption_folder_missing", lambda m, p, t: _folder(t / "nope"), InputError, "directory"),
    ("caption_folder_without_images", lambda m, p, t: _folder(_empty_dir(t / "empty")), InputError, "directory"),
    ("caption_batch_size_0", lambda m, p, t: Qwen3VLBatchCaption().caption(
        [m], [_img()], ["short"], [0], ["Greedy"], [4], [""], [""]), InputError, "batch_size"),
    ("captions_and_paths_lengths_differ", lambda m, p, t: _save(["a", "b"], [t / "x.png"]), InputError, "paths"),
    ("caption_output_dir_unwritable", lambda m, p, t: _save(["a"], [t / "x.png"], output_dir="/proc/qwen3vl-test"),
     InputError, "output_dir"),
    ("caption_extension_escapes_folder", lambda m, p, t: _save(["a"], [t / "x.png"], extension="../x"), InputError,
     "extension"),
]


@pytest.fixture()
def model(dense_path):
    return load_model(str(dense_path), device="cpu", attention="sdpa")


@pytest.mark.parametrize("case,call,error,input_name", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_with_clear_error_and_next_call_works(case, call, error, input_name, model, dense_path, tmp_path,
                                                      monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    held = model.model
    with pytest.raises(error) as err:
        call(model, dense_path, tmp_path)
    assert type(err.value) is error
    assert err.value.input_name == input_name
    assert str(err.value).startswith(f"{input_name}: ")
    assert len(err.value.advice) > 10, "the message must say what to do"
    assert model.key in MODEL_CACHE and model.model is held  # the cache is intact
    text, _, info, _ = _gen(model, image=_img())
    assert isinstance(text, str) and "generated tokens: " in info


def _visual_tokens(info: str) -> list[int]:
    line = next(ln for ln in info.splitlines() if ln.startswith("visual tokens per image: "))
    return [int(v) for v in line.split(": ")[1].split(", ")]


@pytest.mark.parametrize("channels", [1, 2, 4])
def test_accepted_grey_and_alpha_images(model, channels):
    info = _gen(model, image=_img(c=channels))[2]
    assert len(_visual_tokens(info)) == 1


def test_accepted_out_of_range_values_are_clamped(model, caplog):
    with caplog.at_level(logging.WARNING):
        info = _gen(model, image=_img() * 4 - 2)[2]
    assert "clamping" in caplog.text and _visual_tokens(info)


def test_accepted_8k_image_is_cut_by_the_pixel_budget(model):
    big = torch.rand(1, 8192, 8192, 3)
    info = _gen(model, image=big, max_visual_tokens=256)[2]
    assert _visual_tokens(info)[0] <= 256


def test_accepted_top_k_0_means_no_limit(model, monkeypatch):
    seen = {}
    real = type(model.model).generate

    def spy(self, *args, **kwargs):
        seen.update(kwargs)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(model.model), "generate", spy)
    _gen(model, sampling=_sampling(top_k=0, temperature=0.7, top_p=0.9))
    assert seen["do_sample"] is True and seen["top_k"] == 0 and seen["top_p"] == 0.9  # HF: top_k 0 = no top-k


def test_accepted_one_frame_video(model):
    info = _gen(model, video=torch.rand(1, 64, 64, 3), video_fps=25.0)[2]
    assert "visual tokens per video: " in info


def test_accepted_flash_attention_missing_falls_back(dense_path, caplog):
    with caplog.at_level(logging.WARNING):
        bundle = _loader(dense_path, attention="flash_attention_2")
    assert bundle.attention == "sdpa" and "flash_attention_2" in caplog.text


def test_accepted_grounding_text_without_json(model, caplog):
    with caplog.at_level(logging.WARNING):
        bboxes, mask, preview, js = Qwen3VLParseGrounding().parse("I see no cats here.", _img(b=2), "qwen3")
    assert bboxes == [[], []] and float(mask.sum()) == 0 and preview.shape == (2, 48, 64, 3)
    assert json.loads(js) and caplog.text


def test_accepted_folder_skips_too_elongated_files(tmp_path):
    from PIL import Image

    Image.new("RGB", (5000, 3)).save(tmp_path / "strip.png")
    Image.new("RGB", (64, 48)).save(tmp_path / "ok.png")
    images, paths = _folder(tmp_path)
    assert [Path(p).name for p in paths] == ["ok.png"] and images[0].shape == (1, 48, 64, 3)


def test_chat_input_is_never_mutated(model):
    first = _gen(model, image=_img(), prompt="What is this?")[3]
    assert isinstance(first, Chat)
    before = repr(first)
    with pytest.raises(InputError):
        _gen(model, chat=first, video=torch.rand(0, 32, 32, 3), video_fps=30.0)  # refused after the chat check
    second = _gen(model, chat=first, prompt="And the colour?")[3]  # a successful follow-up
    assert repr(first) == before and len(second.messages) == len(first.messages) + 2


def _cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("args,needle", [
    (["ask", "--model", "/nonexistent/model", "hi"], "--model: folder"),
    (["ask", "--image", "/nonexistent.png", "hi"], "--image: cannot read"),
    (["ask", "--max-new-tokens", "0", "hi"], "--max-new-tokens: must be"),
    (["ask", "--preset", "Custom", "--temperature", "0", "hi"], "--temperature: must be > 0"),
    (["caption", "--batch-size", "0", str(ROOT / "assets")], "--batch-size: must be"),
    (["caption", "/nonexistent/folder"], "directory: folder"),
    (["ask", "--image", str(ROOT / "tests" / "assets" / "strip.png"), "hi"], "--image: a 2000x4 image is too elongated"),
])
def test_cli_bad_input_exits_2_with_the_option_named(args, needle, dense_path):
    if "--model" not in args:
        args = args[:1] + ["--model", str(dense_path)] + args[1:]
    out = _cli(*args)
    assert out.returncode == 2, out.stderr
    assert needle in out.stderr and "Traceback" not in out.stderr
