"""Grounding parser and renderers (pure utils/): realistic Qwen answers -> exact pixels, MASK, preview, BBOX."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from qwen3vl_pack.utils.errors import InputError
from qwen3vl_pack.utils.grounding import (
    build_grounding_prompt,
    join_answers,
    parse_grounding,
    parse_index,
    qwen25_resized_size,
    select,
    split_answers,
)
from qwen3vl_pack.utils.grounding_render import grounding_outputs, parse_text_outputs, point_radius

# Relative 0..1000 box [100, 200, 300, 400] and [500, 100, 1000, 500] in pixels of two images.
CAT_W = ("cat", (100.0, 100.0, 300.0, 200.0))   # 1000 x 500 (width x height)
CAT_N = ("cat", (33.3, 155.4, 99.9, 310.8))      # 333 x 777
DOG_W = ("dog", (500.0, 50.0, 1000.0, 250.0))
DOG_N = ("dog", (166.5, 77.7, 333.0, 388.5))
CAT_JSON = '{"bbox_2d": [100, 200, 300, 400], "label": "cat"}'
DOG_JSON = '{"bbox_2d": [500, 100, 1000, 500], "label": "dog"}'

# (case id, model text, expected at 1000x500, expected at 333x777, {counter: value} in the result)
ANSWERS = [
    ("fenced_list", f"```json\n[\n  {CAT_JSON},\n  {DOG_JSON}\n]\n```", [CAT_W, DOG_W], [CAT_N, DOG_N], {}),
    ("prose_around", f"Sure! Here are the objects I found: [{CAT_JSON}] Let me know if you need more.",
     [CAT_W], [CAT_N], {}),
    ("single_quotes", "[{'bbox_2d': [100, 200, 300, 400], 'label': 'cat'}]", [CAT_W], [CAT_N], {}),
    ("trailing_commas", '[{"bbox_2d": [100, 200, 300, 400,], "label": "cat",},]', [CAT_W], [CAT_N], {}),
    ("cut_off_list", f'```json\n[\n  {CAT_JSON},\n  {{"bbox_2d": [500, 100, 10', [CAT_W], [CAT_N],
     {"dropped_incomplete": 1}),
    ("one_object_not_list", CAT_JSON, [CAT_W], [CAT_N], {}),
    ("bbox_key", '[{"bbox": [100, 200, 300, 400], "label": "cat"}]', [CAT_W], [CAT_N], {}),
    ("swapped_corners", '[{"bbox_2d": [300, 400, 100, 200], "label": "cat"}]', [CAT_W], [CAT_N], {}),
    ("outside_0_1000", '[{"bbox_2d": [-50, 200, 1200, 1100], "label": "cat"}]',
     [("cat", (0.0, 100.0, 1000.0, 500.0))], [("cat", (0.0, 155.4, 333.0, 777.0))], {}),
    ("empty_list", "```json\n[]\n```", [], [], {"found_json": True}),
    ("no_json", "I'm sorry, I cannot find any cat in this image.", [], [], {"found_json": False}),
    ("zero_area_dropped", f'[{{"bbox_2d": [100, 200, 100, 400], "label": "line"}}, {CAT_JSON}, '
                          '{"bbox_2d": [1000, 100, 1100, 200], "label": "edge"}]',
     [CAT_W], [CAT_N], {"dropped_zero_area": 2}),
    ("thinking_and_wrapper", f"<think>The cat sits left.</think>\n{{\"objects\": [{CAT_JSON}]}}", [CAT_W], [CAT_N], {}),
    ("python_literal", "[{'bbox_2d': (100, 200, 300, 400), 'label': 'cat', 'occluded': true}]", [CAT_W], [CAT_N], {}),
    ("string_numbers_corner_pairs", '[{"bbox_2d": [["100", "200"], ["300", "400"]], "label": "cat"}]',
     [CAT_W], [CAT_N], {}),
    ("two_fences", f"```json\n[{CAT_JSON}]\n```\nAnd also:\n```json\n[{DOG_JSON}]\n```", [CAT_W, DOG_W],
     [CAT_N, DOG_N], {}),
    ("bad_coordinates_counted", f'[{{"bbox_2d": [100, 200, 300], "label": "x"}}, {DOG_JSON}]', [DOG_W], [DOG_N],
     {"dropped_invalid": 1}),
    ("no_label_plain_fence", '```\n[{"bbox_2d": [100, 200, 300, 400]}]\n```', [("", CAT_W[1])], [("", CAT_N[1])], {}),
    ("apostrophe_and_extra_keys", '{"bbox_2d": [100, 200, 300, 400], "label": "driver\'s seat", "color": "red"}',
     [("driver's seat", CAT_W[1])], [("driver's seat", CAT_N[1])], {}),
    ("points", '```json\n[{"point_2d": [250, 500], "label": "cat"}, {"point_2d": [1000, 0], "label": "dog"}]\n```',
     [("cat", (250.0, 250.0)), ("dog", (1000.0, 0.0))], [("cat", (83.25, 388.5)), ("dog", (333.0, 0.0))], {}),
    ("point_out_of_range", '[{"point_2d": [1500, -20], "label": "cat"}]', [("cat", (1000.0, 0.0))],
     [("cat", (333.0, 0.0))], {}),
]


def _flat(result):
    return [(d.label, d.box if d.box is not None else d.point) for d in result.detections]


@pytest.mark.parametrize("text, wide, narrow, counters", [a[1:] for a in ANSWERS], ids=[a[0] for a in ANSWERS])
def test_realistic_answers_to_exact_pixels(text, wide, narrow, counters):
    r_wide = parse_grounding(text, 1000, 500)
    r_narrow = parse_grounding(text, 333, 777)
    assert _flat(r_wide) == wide
    assert _flat(r_narrow) == narrow
    for name, value in counters.items():
        assert getattr(r_wide, name) == value and getattr(r_narrow, name) == value, name
    for name in ("dropped_zero_area", "dropped_invalid", "dropped_incomplete"):
        if name not in counters:
            assert getattr(r_wide, name) == 0, name


def test_no_json_warns_and_never_raises(caplog):
    with caplog.at_level(logging.WARNING):
        result = parse_grounding("The image shows a cat on a sofa.", 1000, 500)
    assert result.detections == [] and not result.found_json
    assert "no JSON" in caplog.text
    for weird in ("", "{", "}", "```", "[{]", '{"bbox_2d": "abc"}', "{'a': }", "\x00{\x00"):
        parse_grounding(weird, 10, 10)  # must not raise


@pytest.mark.parametrize("mode, text, size, expected", [
    ("normalized", '[{"bbox_2d": [0.1, 0.2, 0.3, 0.4], "label": "cat"}]', (1000, 500), CAT_W[1]),
    ("normalized", '[{"bbox_2d": [0.1, 0.2, 0.3, 0.4], "label": "cat"}]', (333, 777), CAT_N[1]),
    ("pixels", '[{"bbox_2d": [10, 20, 30, 40]}]', (1000, 500), (10.0, 20.0, 30.0, 40.0)),
    ("pixels", '[{"bbox_2d": [10, 20, 400, 900]}]', (333, 777), (10.0, 20.0, 333.0, 777.0)),
    # Qwen2.5-VL default resize of 1000x500 is 1008x504: coordinates of that image back to 1000x500.
    ("qwen2.5", '[{"bbox_2d": [100.8, 50.4, 504, 252]}]', (1000, 500), (100.0, 50.0, 500.0, 250.0)),
    ("qwen2.5", '[{"bbox_2d": [33.6, 78.4, 336, 784]}]', (333, 777), (33.3, 77.7, 333.0, 777.0)),
])
def test_coordinate_modes(mode, text, size, expected):
    assert parse_grounding(text, *size, coord_mode=mode).detections[0].box == expected


def test_qwen25_explicit_resized_size_and_smart_resize():
    r = parse_grounding('[{"bbox_2d": [200, 100, 400, 200]}]', 1000, 500, "qwen2.5", resized=(2000, 1000))
    assert r.detections[0].box == (100.0, 50.0, 200.0, 100.0)
    assert qwen25_resized_size(1000, 500) == (1008, 504)
    assert qwen25_resized_size(333, 777) == (336, 784)
    smart_resize = pytest.importorskip("transformers.models.qwen2_vl.image_processing_qwen2_vl").smart_resize
    for w, h in ((1000, 500), (333, 777), (8000, 6000), (30, 40), (4096, 30)):
        rh, rw = smart_resize(h, w, factor=28, min_pixels=56 * 56, max_pixels=16384 * 28 * 28)
        assert qwen25_resized_size(w, h) == (rw, rh), (w, h)


def test_unknown_coord_mode_names_the_input():
    with pytest.raises(InputError, match="^coord_mode:"):
        parse_grounding("[]", 10, 10, coord_mode="xyxy")


def test_prompts_follow_qwen_cookbook_and_refuse_empty_target():
    boxes = build_grounding_prompt("cat, dog", "boxes")
    assert boxes == ('Locate every instance that belongs to the following categories: "cat, dog". '
                     "Report bbox coordinates in JSON format.")
    points = build_grounding_prompt('the "red" car', "points")
    assert '"the red car"' in points and "point_2d" in points and "bbox" not in points
    for empty in ("", "   ", " , ", '""'):
        with pytest.raises(InputError, match="^target: is empty"):
            build_grounding_prompt(empty, "boxes")
    with pytest.raises(InputError, match="^mode:"):
        build_grounding_prompt("cat", "masks")


def test_label_filter_and_index_selection(caplog):
    text = ('[{"bbox_2d": [0, 0, 10, 10], "label": "cat"}, {"bbox_2d": [0, 0, 20, 20], "label": "Dog"},'
            ' {"bbox_2d": [0, 0, 30, 30], "label": "black cat"}, {"point_2d": [5, 5], "label": "bird"}]')
    dets = parse_grounding(text, 1000, 1000).detections
    assert [i for i, _ in select(dets)] == [0, 1, 2, 3]
    assert [d.label for _, d in select(dets, "CAT")] == ["cat", "black cat"]
    assert [d.label for _, d in select(dets, "dog, bird")] == ["Dog", "bird"]
    assert [(i, d.label) for i, d in select(dets, "cat", [1])] == [(1, "black cat")]
    assert [d.label for _, d in select(dets, "", parse_index("0, 2"))] == ["cat", "black cat"]
    assert parse_index("1-3,0") == [1, 2, 3, 0] and parse_index("  ") is None
    with caplog.at_level(logging.WARNING):
        assert [i for i, _ in select(dets, "", [0, 9])] == [0]
    assert "9" in caplog.text
    for bad in ("a", "1;2", "-1", "3-1", "1.5"):
        with pytest.raises(InputError, match="^index:"):
            parse_index(bad)


def test_answers_join_and_split_per_image():
    assert join_answers(["only"]) == "only"
    joined = join_answers(["[a]", "[b]", "[]"])
    assert split_answers(joined, 3) == ["[a]", "[b]", "[]"]
    assert split_answers("[x]", 3) == ["[x]", "[x]", "[x]"]  # one answer: broadcast to the batch
    with pytest.raises(InputError, match="^text: has answers for images \\[1, 2\\] but the image batch has 3"):
        split_answers(join_answers(["[a]", "[b]"]), 3)


def _image(b=1, h=500, w=1000, value=0.5):
    return torch.full((b, h, w, 3), value, dtype=torch.float32)


def test_mask_shape_dtype_values_and_union():
    text = ('[{"bbox_2d": [100, 200, 300, 400], "label": "cat"}, {"bbox_2d": [200, 200, 400, 400], "label": "cat"},'
            ' {"point_2d": [900, 800], "label": "dot"}]')
    out = grounding_outputs(_image(), [text])
    mask = out.mask
    assert mask.shape == (1, 500, 1000) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert torch.all(mask[0, 100:200, 100:400] == 1.0)  # union of the two overlapping boxes
    r = point_radius(500, 1000)
    disc = int(mask[0, 400 - r - 1:400 + r + 1, 900 - r - 1:900 + r + 1].sum())
    assert float(mask.sum()) == 100 * 300 + disc and 0 < disc <= (2 * r + 1) ** 2
    assert mask[0, 400, 900] == 1.0 and mask[0, 0, 0] == 0.0 and mask[0, 99, 150] == 0.0 and mask[0, 200, 150] == 0.0


def test_preview_same_size_with_drawing_and_bbox_structure():
    image = _image(b=2, h=777, w=333, value=0.25)
    out = grounding_outputs(image, [f"[{CAT_JSON}, {DOG_JSON}]", "no boxes here"])
    assert out.preview.shape == image.shape and out.preview.dtype == torch.float32
    assert 0.0 <= float(out.preview.min()) and float(out.preview.max()) <= 1.0
    assert not torch.equal(out.preview[0], image[0]) and torch.equal(out.preview[1], image[1])
    assert torch.equal(out.preview[0, 600:700, 20:30], image[0, 600:700, 20:30])  # far from any box: untouched
    assert out.bboxes == [[list(CAT_N[1]), list(DOG_N[1])], []]
    assert all(isinstance(v, float) for box in out.bboxes[0] for v in box)
    # kijai/ComfyUI-segment-anything-2 nodes.py Sam2Segmentation.segment: how it reads BBOX
    boxes_np_batch = []
    for bbox_list in out.bboxes:
        boxes_np = np.array([bbox for bbox in bbox_list])
        boxes_np_batch.append(boxes_np)
    assert boxes_np_batch[0].shape == (2, 4)
    report = json.loads(out.json)
    assert [r["image"] for r in report] == [0, 1]
    assert report[0]["detections"][1] == {"index": 1, "label": "dog", "bbox": list(DOG_N[1])}
    assert report[1]["found_json"] is False and report[1]["detections"] == []
    assert (report[0]["width"], report[0]["height"]) == (333, 777)


def test_zero_area_boxes_counted_in_json_and_grey_rgba_images():
    text = '[{"bbox_2d": [100, 200, 100, 400], "label": "line"}, {"bbox_2d": [0, 0, 1000, 1000], "label": "all"}]'
    for channels in (1, 4):
        out = grounding_outputs(torch.rand(1, 50, 60, channels), [text])
        report = json.loads(out.json)[0]
        assert report["dropped_zero_area"] == 1 and len(report["detections"]) == 1
        assert out.mask.shape == (1, 50, 60) and float(out.mask.sum()) == 50 * 60
        assert out.preview.shape == (1, 50, 60, 3)


def test_parse_text_outputs_broadcast_error_and_resized_inputs():
    out = parse_text_outputs(CAT_JSON, _image(b=3))
    assert out.bboxes == [[list(CAT_W[1])]] * 3 and out.mask.shape == (3, 500, 1000)
    with pytest.raises(InputError, match="^text:"):
        parse_text_outputs(join_answers([CAT_JSON, DOG_JSON]), _image(b=3))
    with pytest.raises(InputError, match="^resized_height:"):
        parse_text_outputs(CAT_JSON, _image(), "qwen2.5", resized_width=100)
    out = parse_text_outputs('[{"bbox_2d": [200, 100, 400, 200]}]', _image(), "qwen2.5", resized_width=2000,
                             resized_height=1000)
    assert out.bboxes == [[[100.0, 50.0, 200.0, 100.0]]]
