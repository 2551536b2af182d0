"""Batch captioning on a tiny real Qwen3-VL: order, batching, IMAGE batch vs list, streaming, hooks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from qwen3vl_pack.loaders import batch, cache
from qwen3vl_pack.loaders.backends import local as local_backend
from qwen3vl_pack.loaders.batch import caption_files, caption_images, make_job
from qwen3vl_pack.nodes.caption import Qwen3VLBatchCaption, Qwen3VLLoadImageFolder, Qwen3VLSaveCaptions
from qwen3vl_pack.utils import image_files
from qwen3vl_pack.utils.errors import InputError
from qwen3vl_pack.utils.presets import resolve_options

SIZES = [(96, 64), (200, 150), (64, 64), (320, 240), (128, 300), (80, 80)]
TOKENS = 10


def _pixels(seed: int, size) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def _comfy(*arrays) -> torch.Tensor:
    return torch.stack([torch.from_numpy(a.astype(np.float32) / 255.0) for a in arrays])


def _chw(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def _job(batch_size=8, **kw):
    return make_job(kw.pop("style", "short"), resolve_options("Greedy", kw.pop("tokens", TOKENS)),
                    batch_size=batch_size, **kw)


@pytest.fixture()
def spy(monkeypatch):
    """Record every generate call of the batch engine (conversation count and results); the model runs for real."""
    calls = []
    real = local_backend.generate

    def record(model, processor, conversations, options, **kw):
        results = real(model, processor, conversations, options, **kw)
        calls.append((len(conversations), [r.token_ids for r in results]))
        return results

    monkeypatch.setattr(local_backend, "generate", record)
    return calls


def test_batched_captions_are_token_identical_to_one_at_a_time(dense, spy):
    images = [_chw(_pixels(i, s)) for i, s in enumerate(SIZES)]
    batched = caption_images(dense, images, _job(batch_size=4))
    assert [n for n, _ in spy] == [4, 2]  # two left-padded generate calls
    batched_ids = [ids for _, rows in spy for ids in rows]
    spy.clear()
    single = caption_images(dense, images, _job(batch_size=1))
    assert [n for n, _ in spy] == [1] * 6
    single_ids = [rows[0] for _, rows in spy]
    assert batched_ids == single_ids and batched == single
    assert len(set(map(tuple, single_ids))) > 1  # different images -> different answers: order is observable


def test_n_images_give_n_captions_in_order(dense):
    images = [_chw(_pixels(i, s)) for i, s in enumerate(SIZES)]
    forward = caption_images(dense, images, _job(batch_size=4))
    backward = caption_images(dense, images[::-1], _job(batch_size=4))
    assert len(forward) == len(images) and all(isinstance(c, str) for c in forward)
    assert backward == forward[::-1]


def test_node_takes_an_image_batch_or_a_list_of_any_sizes(dense):
    same = [_pixels(i, (96, 64)) for i in range(3)]
    node = Qwen3VLBatchCaption()
    common = dict(style=["short"], batch_size=[2], preset=["Greedy"], max_new_tokens=[TOKENS],
                  prefix=["ohwx"], suffix=[""])
    from_batch, _ = node.caption([dense], [_comfy(*same)], **common)
    from_list, _ = node.caption([dense], [_comfy(a) for a in same], **common)
    assert from_batch == from_list and len(from_batch) == 3
    assert all(c.startswith("ohwx") for c in from_batch)
    mixed = [_pixels(i, s) for i, s in enumerate(SIZES[:4])]
    captions, _ = node.caption([dense], [_comfy(mixed[0]), _comfy(mixed[1], mixed[1]), _comfy(mixed[2]),
                                         _comfy(mixed[3])], **common)
    assert len(captions) == 5 and captions[1] == captions[2]  # the batch of two expands in place
    alone = [node.caption([dense], [_comfy(a)], **common)[0][0] for a in mixed]
    assert [captions[0], captions[1], captions[3], captions[4]] == alone
    assert node.caption([dense], [], **common)[0] == []  # nothing left to caption: an empty list, not an error
    assert Qwen3VLBatchCaption.INPUT_IS_LIST is True and Qwen3VLBatchCaption.OUTPUT_IS_LIST == (True, False)


def test_interrupt_between_and_inside_batches(dense, spy):
    images = [_chw(_pixels(i, (64, 64))) for i in range(5)]
    seen = []

    def stop_at_second_batch(done, total):
        seen.append((done, total))
        if done >= 2:
            raise InterruptedError

    with pytest.raises(InterruptedError):
        caption_images(dense, images, _job(batch_size=2), on_progress=stop_at_second_batch)
    assert seen == [(0, 5), (2, 5)] and len(spy) == 1
    steps = []

    def stop_at_step_3(n):
        steps.append(n)
        if n >= 3:
            raise InterruptedError

    with pytest.raises(InterruptedError):
        caption_images(dense, images, _job(batch_size=2), on_step=stop_at_step_3)
    assert steps[-1] == 3 and len(spy) == 1  # the second call never returned


def test_progress_moves_image_by_image_and_token_by_token(dense):
    from qwen3vl_pack.loaders.batch import progress_hooks

    images = [_chw(_pixels(i, (64, 64))) for i in range(5)]
    job = _job(batch_size=2, tokens=4)
    seen, checks = [], []
    on_progress, on_step = progress_hooks(5, job, lambda v, t: seen.append((v, t)), lambda: checks.append(1))
    assert len(caption_images(dense, images, job, on_step=on_step, on_progress=on_progress)) == 5
    values = [v for v, _ in seen]
    assert {t for _, t in seen} == {20} and values[0] == 0 and values[-1] == 20
    assert values == sorted(values) and len(checks) == len(seen)
    assert {8, 16} <= set(values)  # image boundaries: 2 and 4 images done
    assert any(v % 4 for v in values)  # and steps inside a batch


def test_keep_loaded_off_loads_once_and_frees_after_the_run(dense_path, monkeypatch, clean_cache):
    loads = []
    real = cache._load_from_disk
    monkeypatch.setattr(cache, "_load_from_disk", lambda key, *a: loads.append(key) or real(key, *a))
    bundle = cache.load_model(str(dense_path), [], dtype="fp32", attention="sdpa", device="cpu", keep_loaded=False)
    images = [_chw(_pixels(i, (64, 64))) for i in range(5)]
    assert len(caption_images(bundle, images, _job(batch_size=2))) == 5
    assert len(loads) == 1 and not bundle.loaded


def test_caption_files_streams_and_writes_each_batch(dense, tmp_path, monkeypatch):
    files = []
    for i, size in enumerate(SIZES):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(_pixels(i, size)).save(files[-1])
    (tmp_path / "bad.png").write_bytes(b"junk")
    files.insert(3, tmp_path / "bad.png")
    reads = []
    real_read = image_files.read_rgb
    monkeypatch.setattr(image_files, "read_rgb", lambda p: reads.append(Path(p).name) or real_read(p))
    progress = []

    def stop_after_first_batch(n):
        progress.append(n)
        raise KeyboardInterrupt

    summary = batch.FolderSummary()
    with pytest.raises(KeyboardInterrupt):
        caption_files(dense, files, _job(batch_size=2), on_progress=stop_after_first_batch, summary=summary)
    assert reads == ["0.png", "1.png"] and progress == [2]  # the rest of the folder was never read
    assert sorted(p.name for p in tmp_path.glob("*.txt")) == ["0.txt", "1.txt"] and summary.captioned == 2
    progress.clear()
    done = caption_files(dense, files, _job(batch_size=2), on_progress=progress.append)
    assert sum(progress) == len(files) and done.captioned == 6 and [p.name for p in done.unreadable] == ["bad.png"]
    assert len(done.report.skipped) == 2 and len(done.report.written) == 4  # the first batch was already written
    assert sorted(p.name for p in tmp_path.glob("*.txt")) == [f"{i}.txt" for i in range(6)]


def test_folder_to_captions_to_files_through_the_nodes(dense, tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    for i, size in enumerate(SIZES[:4]):
        Image.fromarray(_pixels(i, size)).save(folder / f"img{i}.png")
    (folder / "img2.txt").write_text("my caption\n", encoding="utf-8")
    images, paths = Qwen3VLLoadImageFolder().load(str(folder), False, "png", "natural", 0, 0, True)
    assert [Path(p).name for p in paths] == ["img0.png", "img1.png", "img3.png"]
    captions, _ = Qwen3VLBatchCaption().caption(
        [dense], images, ["training"], [2], ["Greedy"], [TOKENS], ["ohwx"], ["film photo"])
    out = Qwen3VLSaveCaptions().save(captions, paths, ["skip"], [".txt"], [""])
    assert out["result"][0].startswith("3 caption(s): 3 written")
    for path, caption in zip(paths, captions, strict=True):
        text = Path(path).with_suffix(".txt").read_text(encoding="utf-8")
        assert text == caption + "\n" and "\n" not in caption and caption.startswith("ohwx")
    again = Qwen3VLSaveCaptions().save(["a model caption"], [str(folder / "img2.png")], ["skip"], [".txt"], [""])
    assert "1 skipped" in again["result"][0]  # the hand-written caption is never overwritten by default
    assert (folder / "img2.txt").read_text(encoding="utf-8") == "my caption\n"


@pytest.mark.parametrize("kwargs, name", [
    (dict(batch_size=[0]), "batch_size"),
    (dict(style=["custom"]), "custom_prompt"),
    (dict(max_new_tokens=[0]), "max_new_tokens"),
    (dict(images=[torch.zeros(1, 8, 8, 5)]), "images"),
])
def test_bad_caption_inputs_name_the_input(dense, kwargs, name):
    args = dict(model=[dense], images=[_comfy(_pixels(0, (64, 64)))], style=["short"], batch_size=[2],
                preset=["Greedy"], max_new_tokens=[4], prefix=[""], suffix=[""])
    args.update(kwargs)
    with pytest.raises(InputError) as err:
        Qwen3VLBatchCaption().caption(**args)
    assert err.value.input_name == name
