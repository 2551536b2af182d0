"""Task outputs (pure utils/): every task fills the same ten outputs; exact BBOX, MASK, SAM2 points, frames."""

from __future__ import annotations

import json

import pytest
import torch

from qwen3vl_pack.utils.errors import InputError
from qwen3vl_pack.utils.task_prompts import TASK_NAMES, TASKS, build_task_prompt
from qwen3vl_pack.utils.task_render import events_outputs, image_task_outputs, parse_task_text

SIZES = [(1000, 500), (250, 2000)]  # (width, height)


def _image(width, height, batch=1):
    return torch.rand(batch, height, width, 3, generator=torch.Generator().manual_seed(width))


def _check_types(out, batch, height, width):
    text, document, report, bboxes, mask, preview, points, items, frames, raw = out.as_tuple()
    assert all(isinstance(s, str) for s in (text, document, report, points, raw))
    assert isinstance(json.loads(report), (list, dict)) and isinstance(json.loads(points), list)
    assert isinstance(bboxes, list) and len(bboxes) == batch and all(isinstance(b, list) for b in bboxes)
    assert mask.shape == (batch, height, width) and mask.dtype == torch.float32
    assert preview.shape == (batch, height, width, 3) and preview.dtype == torch.float32
    assert isinstance(items, list) and items and all(isinstance(i, str) for i in items)
    assert isinstance(frames, list) and frames and all(isinstance(f, str) for f in frames)


@pytest.mark.parametrize("task", [t for t in TASK_NAMES if not TASKS[t].video])
def test_every_image_task_gives_well_typed_empty_outputs_on_random_text(task):
    image = _image(96, 64, batch=2)
    out = image_task_outputs(task, ["],��-Z umbrella dog�", "ss( loightmilde"], image)
    _check_types(out, 2, 64, 96)
    assert out.bboxes == [[], []] and float(out.mask.sum()) == 0 and out.points == "[]" and out.frames == [""]
    if task not in ("ocr", "image prompt"):
        assert torch.equal(out.preview, image)  # nothing drawn


@pytest.mark.parametrize("width, height", SIZES)
def test_spotting_outputs_exact(width, height):
    answer = ('```json\n[{"bbox_2d": [100, 200, 300, 400], "text_content": "GRAND TOTAL"}, '
              '{"bbox_2d": [500, 100, 1000, 500], "text_content": "17,000"}]\n```')
    image = _image(width, height)
    out = image_task_outputs("text spotting", [answer], image)
    sx, sy = width / 1000, height / 1000
    boxes = [[100 * sx, 200 * sy, 300 * sx, 400 * sy], [500 * sx, 100 * sy, 1000 * sx, 500 * sy]]
    assert out.bboxes == [boxes]
    assert out.text == "GRAND TOTAL\n17,000" and out.items == ["GRAND TOTAL", "17,000"]
    expected = torch.zeros(1, height, width)
    for x1, y1, x2, y2 in boxes:
        expected[0, round(y1):round(y2), round(x1):round(x2)] = 1
    assert torch.equal(out.mask, expected)
    changed = (out.preview != image).any(-1)[0]
    assert changed.any() and not changed[-1, 0]  # boxes and their text drawn; the bottom-left corner untouched
    lines = json.loads(out.json)[0]["lines"]
    assert [(line["index"], line["text"], line["bbox"]) for line in lines] == [(0, "GRAND TOTAL", boxes[0]),
                                                                              (1, "17,000", boxes[1])]


@pytest.mark.parametrize("width, height, sam2", [(1000, 500, [{"x": 250, "y": 250}, {"x": 999, "y": 0}]),
                                                 (250, 2000, [{"x": 63, "y": 1000}, {"x": 249, "y": 0}])])
def test_points_outputs_for_sam2(width, height, sam2):
    answer = '```json\n[{"point_2d": [250, 500], "label": "cat"}, {"point_2d": [1000, 0], "label": "dog"}]\n```'
    out = image_task_outputs("points", [answer], _image(width, height))
    assert json.loads(out.points) == sam2  # kijai's Sam2Segmentation: json.loads, then (c['x'], c['y'])
    assert out.bboxes == [[]] and out.items == ["cat", "dog"]
    assert out.mask.sum() > 0 and out.mask[0, sam2[0]["y"], sam2[0]["x"]] == 1.0  # a disc around each point
    assert [p["point"] for p in json.loads(out.json)[0]["points"]] == [[width / 4, height / 2], [float(width), 0.0]]


def test_points_of_a_batch_use_the_first_image_for_sam2():
    answers = ['[{"point_2d": [100, 100], "label": "a"}]', '[{"point_2d": [900, 900], "label": "b"}]']
    out = image_task_outputs("points", answers, _image(100, 100, batch=2))
    assert json.loads(out.points) == [{"x": 10, "y": 10}] and out.items == ["a", "b"]
    assert out.raw == "=== image 1 ===\n" + answers[0] + "\n\n=== image 2 ===\n" + answers[1]


@pytest.mark.parametrize("task", ["document html", "document markdown"])
def test_document_outputs(task):
    answer = ('```html\n<h1 data-bbox="100 200 300 400">Title</h1><p data-bbox="100 500 900 600">Body</p>\n```'
              if task == "document html" else "# Title\n\n<!-- Table (100, 200, 300, 400) -->\n| a | b |\n")
    out = image_task_outputs(task, [answer], _image(1000, 500))
    assert out.document == answer.removeprefix("```html\n").removesuffix("\n```").strip()
    assert out.bboxes[0][0] == [100.0, 100.0, 300.0, 200.0]
    assert out.text == ("Title\nBody" if task == "document html" else "Title\na\tb")
    elements = json.loads(out.json)[0]["elements"]
    assert elements[0]["tag"] == ("h1" if task == "document html" else "Table")


def test_3d_outputs_draw_the_wireframe_and_give_its_extent():
    answer = '[{"bbox_3d": [0, 0, 5, 2, 2, 2, 0, 0, 0], "label": "cube"}, {"bbox_3d": [0, 0, -5, 1, 1, 1, 0, 0, 0]}]'
    image = torch.zeros(1, 500, 1000, 3)
    out = image_task_outputs("3d boxes", [answer], image, fov=90.0)
    assert out.bboxes == [[[375.0, 187.5, 625.0, 312.5]]]  # the second box is behind the camera: not drawn
    boxes = json.loads(out.json)[0]["boxes"]
    assert [b["drawn"] for b in boxes] == [True, False] and boxes[0]["rotation"] == {"roll": 0, "pitch": 0, "yaw": 0}
    assert out.preview[0, 250, 625].any() and out.preview[0, 312, 500].any()  # right edge, bottom edge drawn
    assert not out.preview[0, 450, 100].any() and not out.preview[0, 250, 500].any()  # far away, box centre
    assert out.items == ["cube", ""]


def test_events_outputs_seconds_frames_and_key_frames():
    video = torch.rand(50, 32, 48, 3)
    answer = ('{"00:01.50 - 00:03.00": "a dog runs in", "00:04.00 - 00:06.25": "it sits", '
              '"00:06.00 - 00:08.00": "after the clip"}')
    out = events_outputs(answer, video, 10.0)
    assert out.frames == ["15:31", "40:50"] and out.items == ["00:01.50 - 00:03.00: a dog runs in",
                                                              "00:04.00 - 00:06.25: it sits"]
    assert out.text == "\n".join(out.items)
    report = json.loads(out.json)
    assert report["dropped_outside"] == 1 and report["duration"] == 5.0
    assert [(e["start"], e["end"], e["start_frame"], e["end_frame"]) for e in report["events"]] == [
        (1.5, 3.0, 15, 30), (4.0, 6.25, 40, 49)]
    assert out.preview.shape == (2, 32, 48, 3) and out.mask.shape == (2, 32, 48) and out.bboxes == [[], []]
    assert torch.equal(out.preview[1, -1, -1], video[40, -1, -1])  # the event's first frame (caption top-left)


def test_events_without_video_or_fps():
    out = events_outputs('{"00:01 - 00:02": "x"}', None, 25.0)
    assert out.frames == ["25:51"] and out.preview.shape == (1, 64, 64, 3)
    empty = events_outputs("no events", torch.rand(4, 8, 8, 3), 2.0)
    assert empty.frames == [""] and empty.items == [""] and empty.preview.shape == (1, 8, 8, 3)
    with pytest.raises(InputError, match="^video_fps:"):
        events_outputs("{}", None, 0.0)


def test_parse_task_text_batches_and_errors():
    text = "=== image 1 ===\nHELLO\n\n=== image 2 ===\nWORLD"
    out = parse_task_text(text, "ocr", _image(40, 30, batch=2))
    assert out.text == "=== image 1 ===\nHELLO\n\n=== image 2 ===\nWORLD" and out.items == ["HELLO", "WORLD"]
    no_image = parse_task_text(text, "ocr")
    assert no_image.items == ["HELLO", "WORLD"] and no_image.preview.shape == (2, 64, 64, 3)
    with pytest.raises(InputError, match="^image:"):
        parse_task_text('[{"point_2d": [1, 2]}]', "points")
    with pytest.raises(InputError, match="^text:"):
        parse_task_text(text, "text spotting", _image(40, 30, batch=3))
    with pytest.raises(InputError, match="^task:"):
        parse_task_text("x", "caption")


@pytest.mark.parametrize("task, kwargs, expected", [
    ("ocr", {}, "Read all the text in the image."),
    ("ocr", {"language": "German"}, "Read all the text in the image. The text is in German."),
    ("text spotting", {}, "Spotting all the text in the image with line-level, and output in JSON format as "
                          "[{'bbox_2d': [x1, y1, x2, y2], 'text_content': 'text'}, ...]."),
    ("document html", {}, "qwenvl html"), ("document markdown", {}, "qwenvl markdown"),
    ("points", {"target": "cat, dog"}, 'Locate every instance that belongs to the following categories: "cat, dog". '
                                       'Report point coordinates in JSON format like this: {"point_2d": [x, y], '
                                       '"label": "category"}.'),
    ("3d boxes", {"target": "car"}, 'Find all car in this image. For each one, provide its 3D bounding box. The '
                                    'output format required is JSON: `[{"bbox_3d":[x_center, y_center, z_center, '
                                    'x_size, y_size, z_size, roll, pitch, yaw],"label":"category"}]`.'),
    ("video events", {}, "Localize a series of activity events in the video, output the start and end timestamp for "
                         "each event, and describe each event with sentences. Provide the result in json format with "
                         "'mm:ss.ff' format for time depiction."),
    ("gui click", {"target": "click the Save button"}, "The user query: click the Save button."),
])
def test_official_prompts(task, kwargs, expected):
    assert build_task_prompt(task, **kwargs).user == expected


def test_prompt_inputs_are_checked():
    for task in ("points", "3d boxes", "gui click"):
        with pytest.raises(InputError, match="^target:"):
            build_task_prompt(task, "  , ")
    with pytest.raises(InputError, match="^language:"):
        build_task_prompt("ocr", language="Klingon")
    with pytest.raises(InputError, match="^style:"):
        build_task_prompt("image prompt", style="Midjourney")
    gui = build_task_prompt("gui click", "click Save")
    assert '"name": "computer_use"' in gui.system and "999x999" in gui.system
    sdxl = build_task_prompt("image prompt", "focus on the dog", style="SDXL tags short").user
    assert "about 15 tags" in sdxl and "focus on the dog" in sdxl
