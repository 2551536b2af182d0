"""Task answer parsers (pure utils/): realistic Qwen3-VL answers -> exact pixels at two image sizes, seconds, frames."""

from __future__ import annotations

import time

import pytest

from qwen3vl_pack.utils.boxes3d import camera_from_fov, extent, project
from qwen3vl_pack.utils.document_parse import parse_html, parse_markdown
from qwen3vl_pack.utils.errors import InputError
from qwen3vl_pack.utils.task_parsers import (
    Box3D,
    Event,
    event_frames,
    format_time,
    parse_boxes_3d,
    parse_events,
    parse_gui,
    parse_plain,
    parse_points,
    parse_prompt,
    parse_spotting,
    parse_time,
)

# Two image sizes (width, height) where relative 0..1000 values give round pixels: x * 1, y / 2 and x / 4, y * 2.
WIDE, TALL = (1000, 500), (250, 2000)


def _flat(result):
    return [(d.label, d.box if d.box is not None else d.point) for d in result.detections]


# ------------------------------------------------------------------------------------ text spotting

SPOTTING = [
    ("fenced_single_quotes_cut_off",
     "```json\n[\n  {'bbox_2d': [100, 200, 300, 400], 'text_content': 'GRAND TOTAL'},\n"
     "  {'bbox_2d': [500, 100, 1000, 500], 'text_content': \"Auntie Anne's\"},\n  {'bbox_2d': [40, 600, 9",
     [("GRAND TOTAL", (100.0, 100.0, 300.0, 200.0)), ("Auntie Anne's", (500.0, 50.0, 1000.0, 250.0))],
     [("GRAND TOTAL", (25.0, 400.0, 75.0, 800.0)), ("Auntie Anne's", (125.0, 200.0, 250.0, 1000.0))],
     {"dropped_incomplete": 1}),
    ("prose_around_text_key",
     'Here are the text lines:\n[{"bbox_2d": [100, 200, 300, 400], "text": "17,000"}]\nLet me know if you need more.',
     [("17,000", (100.0, 100.0, 300.0, 200.0))], [("17,000", (25.0, 400.0, 75.0, 800.0))], {}),
    ("thinking_trailing_comma_swapped",
     '<think>Two lines.</think>[{"bbox_2d": [300, 400, 100, 200], "text_content": "CASH",},]',
     [("CASH", (100.0, 100.0, 300.0, 200.0))], [("CASH", (25.0, 400.0, 75.0, 800.0))], {}),
    ("no_json", "The image contains no readable text.", [], [], {"found_json": False}),
]


@pytest.mark.parametrize("text, wide, tall, counters", [c[1:] for c in SPOTTING], ids=[c[0] for c in SPOTTING])
def test_spotting_lines_to_exact_pixels(text, wide, tall, counters):
    for size, expected in ((WIDE, wide), (TALL, tall)):
        result = parse_spotting(text, *size)
        assert _flat(result) == expected
        for name, value in counters.items():
            assert getattr(result, name) == value, name


# ------------------------------------------------------------------------------------- points, GUI

POINTS = [
    ("cookbook_answer", '```json\n[\n\t{"point_2d": [925, 618], "label": "point_1"}\n]\n```',
     [("point_1", (925.0, 309.0))], [("point_1", (231.25, 1236.0))]),
    ("two_points_cut_off", '[{"point_2d": [250, 500], "label": "cat"}, {"point_2d": [1000, 0], "label": "dog"}, {"po',
     [("cat", (250.0, 250.0)), ("dog", (1000.0, 0.0))], [("cat", (62.5, 1000.0)), ("dog", (250.0, 0.0))]),
]


@pytest.mark.parametrize("text, wide, tall", [c[1:] for c in POINTS], ids=[c[0] for c in POINTS])
def test_points_to_exact_pixels(text, wide, tall):
    assert _flat(parse_points(text, *WIDE)) == wide
    assert _flat(parse_points(text, *TALL)) == tall


GUI = [
    ("cookbook_tool_call",  # mobile_agent.ipynb's answer layout; coordinates on a 999x999 screen
     'Thought: The Save button is at the top left.\nAction: "Click the Save button."\n<tool_call>\n'
     '{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [499.5, 999]}}\n</tool_call>',
     [("left_click", (500.0, 500.0))], [("left_click", (125.0, 2000.0))], 0),
    ("arguments_as_string",
     '<tool_call>{"name": "computer_use", "arguments": "{\\"action\\": \\"double_click\\", '
     '\\"coordinate\\": [999, 249.75]}"}</tool_call>', [("double_click", (1000.0, 125.0))],
     [("double_click", (250.0, 500.0))], 0),
    ("point_2d_answer", '```json\n{"point_2d": [200, 800], "label": "Save button"}\n```',
     [("Save button", (200.0, 400.0))], [("Save button", (50.0, 1600.0))], 0),
    ("answer_action_no_point", '<tool_call>{"name": "computer_use", "arguments": {"action": "answer", '
     '"text": "There is no Save button."}}</tool_call>', [], [], 0),
    ("cut_off", '<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [49',
     [], [], 1),
]


@pytest.mark.parametrize("text, wide, tall, incomplete", [c[1:] for c in GUI], ids=[c[0] for c in GUI])
def test_gui_click_to_exact_pixels(text, wide, tall, incomplete):
    assert _flat(parse_gui(text, *WIDE)) == wide
    result = parse_gui(text, *TALL)
    assert _flat(result) == tall and result.dropped_incomplete == incomplete


# ------------------------------------------------------------------------------------------ documents

HTML = ('```html\n<html><body>\n<h2 data-bbox="312 96 656 132">Qwen3-VL Technical Report</h2>\n'
        '<p data-bbox="428 156 540 184">Qwen Team &amp; friends</p>\n'
        '<div class="image" data-bbox="260 196 708 272"><img data-bbox="260 196 708 272"/></div>\n'
        '<p data-bbox="100 340 868 564">First paragraph\n'
        '<p data-bbox="100 568 868 732">Second paragraph, cut off by max_new_to')
HTML_WIDE = [(312.0, 48.0, 656.0, 66.0), (428.0, 78.0, 540.0, 92.0), (260.0, 98.0, 708.0, 136.0),
             (100.0, 170.0, 868.0, 282.0), (100.0, 284.0, 868.0, 366.0)]
HTML_TALL = [(78.0, 192.0, 164.0, 264.0), (107.0, 312.0, 135.0, 368.0), (65.0, 392.0, 177.0, 544.0),
             (25.0, 680.0, 217.0, 1128.0), (25.0, 1136.0, 217.0, 1464.0)]
HTML_LABELS = ["Qwen3-VL Technical Report", "Qwen Team & friends", "", "First paragraph",
               "Second paragraph, cut off by max_new_to"]


@pytest.mark.parametrize("size, boxes", [(WIDE, HTML_WIDE), (TALL, HTML_TALL)], ids=["1000x500", "250x2000"])
def test_html_boxes_unclosed_tags_and_cut_off(size, boxes):
    result = parse_html(HTML, *size)
    assert [d.box for d in result.boxes.detections] == boxes
    assert [d.label for d in result.boxes.detections] == HTML_LABELS
    assert result.tags == ["h2", "p", "div", "p", "p"]  # the <img> repeating its <div>'s box is one box
    assert result.text == ("Qwen3-VL Technical Report\nQwen Team & friends\nFirst paragraph\n"
                           "Second paragraph, cut off by max_new_to")
    assert result.document.startswith("<html><body>") and "```" not in result.document


def test_html_lists_tables_stray_tags_and_bad_boxes():
    answer = ('<html><body><ol data-bbox="0 0 1000 1000"><li data-bbox="100 200 300 400">First</li>'
              '<li data-bbox="100 400 300 600">Second</ol></span></div>'
              '<table data-bbox="40 600 960 900"><tr><td>Name<td>Total<tr><td>Tea<td>3.50</table>'
              '<p data-bbox="1 2 3">three numbers</p><p data-bbox="500 500 500 700">no width</p></body></html>')
    result = parse_html(answer, *WIDE)
    assert [(t, d.label) for t, d in zip(result.tags, result.boxes.detections, strict=True)] == [
        ("li", "First"), ("li", "Second"), ("table", "Name Total Tea 3.50")]  # the <ol> is skipped, as Qwen's does
    assert result.boxes.detections[2].box == (40.0, 300.0, 960.0, 450.0)
    assert result.boxes.dropped_invalid == 1 and result.boxes.dropped_zero_area == 1
    assert result.text == "First\nSecond\nName\tTotal\nTea\t3.50\nthree numbers\nno width"


MARKDOWN = ("```markdown\n# Invoice 2024\n\nSome **bold** text and a [link](http://example.com).\n\n"
            "<!-- Image (100, 200, 300, 400) -->\n\n<!-- Table (40, 600, 960, 900) -->\n"
            "| Item | Price |\n|---|---|\n| Tea | 3.50 |\n```")


@pytest.mark.parametrize("size, boxes", [
    (WIDE, [("Image", (100.0, 100.0, 300.0, 200.0)), ("Table", (40.0, 300.0, 960.0, 450.0))]),
    (TALL, [("Image", (25.0, 400.0, 75.0, 800.0)), ("Table", (10.0, 1200.0, 240.0, 1800.0))]),
], ids=["1000x500", "250x2000"])
def test_markdown_image_and_table_boxes(size, boxes):
    result = parse_markdown(MARKDOWN, *size)
    assert _flat(result.boxes) == boxes
    assert result.text == "Invoice 2024\nSome bold text and a link.\nItem\tPrice\nTea\t3.50"
    assert result.document.startswith("# Invoice 2024") and result.document.endswith("| Tea | 3.50 |")


# ------------------------------------------------------------------------------------------ 3D boxes

def test_3d_cookbook_answer_cut_off():
    answer = ('```json\n[{"bbox_3d": [2.88, 0.56, 6.28, 4.45, 1.7, 1.84, 0.75, 0.49, 0.75], "label": "car"}, '
              '{"bbox_3d": [2.83, 0.58, 14.78, 4.43, 1.56], "label": "car"}, {"bbox_3d": [1, 2')
    result = parse_boxes_3d(answer)
    assert result.boxes == [Box3D("car", (2.88, 0.56, 6.28), (4.45, 1.7, 1.84), (0.75, 0.49, 0.75))]
    assert (result.dropped_invalid, result.dropped_incomplete) == (1, 1)


@pytest.mark.parametrize("box, wide, tall", [
    # a 2 m cube 5 m ahead, fov 90: corners at Z = 4 and 6, the front face spans +-1/4 of the focal length
    (Box3D("cube", (0, 0, 5), (2, 2, 2), (0, 0, 0)), (375.0, 187.5, 625.0, 312.5), (93.75, 750.0, 156.25, 1250.0)),
    # a 4 x 2 x 2 box turned by 0.5 (x 180 = 90 degrees) about y: its long side now points away from the camera
    (Box3D("bar", (0, 0, 5), (4, 2, 2), (0, 0.5, 0)), (333.33, 166.67, 666.67, 333.33), (83.33, 666.67, 166.67, 1333.33)),
    # right half outside the picture: clamped to the image (nearest left corner X = 4 at Z = 6)
    (Box3D("edge", (5, 0, 5), (2, 2, 2), (0, 0, 0)), (833.33, 187.5, 1000.0, 312.5), (208.33, 750.0, 250.0, 1250.0)),
], ids=["cube", "turned", "clamped"])
def test_3d_projection_to_exact_pixels(box, wide, tall):
    for size, expected in ((WIDE, wide), (TALL, tall)):
        corners = project(box, camera_from_fov(*size, fov=90.0))
        assert len(corners) == 8 and extent(corners, *size) == expected


def test_3d_behind_camera_and_fov_checks():
    assert project(Box3D("", (0, 0, -5), (2, 2, 2), (0, 0, 0)), camera_from_fov(*WIDE)) is None
    assert project(Box3D("", (0, 0, 0.5), (2, 2, 2), (0, 0, 0)), camera_from_fov(*WIDE)) is None  # camera inside
    cam = camera_from_fov(1000, 500)  # the cookbook's 60 degree default
    assert (round(cam.fx, 2), round(cam.fy, 2), cam.cx, cam.cy) == (866.03, 433.01, 500.0, 250.0)
    with pytest.raises(InputError, match="^fov:"):
        camera_from_fov(100, 100, 0.0)


# ------------------------------------------------------------------------------------------ video events

COOKBOOK_EVENTS = ('{\n    "00:23.00 - 00:48.00": "trim the fat off a piece of beef.",\n'
                   '    "00:56.00 - 01:28.00": "season the beef with salt and pepper.",\n'
                   '    "01:29.00 - 01:38.00": "place the beef on a grill and close the lid."\n}')
EVENTS = [
    ("cookbook_mapping", COOKBOOK_EVENTS,
     [(23.0, 48.0, "trim the fat off a piece of beef."), (56.0, 88.0, "season the beef with salt and pepper."),
      (89.0, 98.0, "place the beef on a grill and close the lid.")], {"dropped_incomplete": 0}),
    ("mapping_cut_off", COOKBOOK_EVENTS[:COOKBOOK_EVENTS.index("grill")],
     [(23.0, 48.0, "trim the fat off a piece of beef."), (56.0, 88.0, "season the beef with salt and pepper.")],
     {"dropped_incomplete": 1}),
    ("list_fenced_cut_off",
     '```json\n[{"start_time": "00:01.50", "end_time": "00:03.00", "description": "A dog runs in."},\n'
     ' {"start_time": "00:04.00", "end_time": "00:06.25", "description": "It sits."},\n {"start_time": "00:07',
     [(1.5, 3.0, "A dog runs in."), (4.0, 6.25, "It sits.")], {"dropped_incomplete": 1}),
    ("timestamp_key_and_wrapper",
     '<think>Two events.</think>{"events": [{"timestamp": "00:05.00 - 00:07.50", "event": "door opens"}, '
     '{"time": ["00:08", "00:09.5"], "caption": "man enters"}]}',
     [(5.0, 7.5, "door opens"), (8.0, 9.5, "man enters")], {}),
    ("seconds_swapped_and_bad", '[{"start": 3, "end": 1.5, "description": "backwards"}, '
     '{"start": "soon", "end": "later", "description": "no times"}]', [(1.5, 3.0, "backwards")],
     {"dropped_invalid": 1}),
    ("plain_text_lines", "1. 0:05 - 0:10: The dog runs.\n2. From 00:12.00 to 00:15.00, it sits.\n"
     "3. <20.0 seconds> - <21.5 seconds> it jumps", [(5.0, 10.0, "The dog runs."), (12.0, 15.0, "it sits."),
                                                      (20.0, 21.5, "it jumps")], {}),
    ("hours", '{"01:00:05.00 - 01:00:07.00": "late event"}', [(3605.0, 3607.0, "late event")], {}),
    ("nothing", "I could not find distinct events in this video.", [], {"found_json": False}),
]


@pytest.mark.parametrize("text, expected, counters", [c[1:] for c in EVENTS], ids=[c[0] for c in EVENTS])
def test_events_to_seconds(text, expected, counters):
    result = parse_events(text)
    assert [(e.start, e.end, e.description) for e in result.events] == expected
    for name, value in counters.items():
        assert getattr(result, name) == value, name


@pytest.mark.parametrize("text, seconds", [("00:23.00", 23.0), ("01:28.50", 88.5), ("1:02:03.25", 3723.25),
                                           ("12.5", 12.5), ("12.5s", 12.5), ("<12.5 seconds>", 12.5), (7, 7.0),
                                           ("soon", None), (-1, None), (True, None), ("1:2:3:4", None)])
def test_parse_time(text, seconds):
    assert parse_time(text) == seconds


@pytest.mark.parametrize("event, fps, total, frames", [
    (Event(1.5, 3.0, ""), 10.0, 50, (15, 30)), (Event(4.0, 6.25, ""), 10.0, 50, (40, 49)),
    (Event(0.0, 0.01, ""), 24.0, None, (0, 0)), (Event(2.0, 4.0, ""), 29.97, None, (60, 120)),
])
def test_event_frames(event, fps, total, frames):
    assert event_frames(event, fps, total) == frames


def test_format_time():
    assert [format_time(s) for s in (0, 1.5, 88.0, 3723.25)] == ["00:00.00", "00:01.50", "01:28.00", "62:03.25"]


# --------------------------------------------------------------------------------------- plain answers

@pytest.mark.parametrize("answer, prompt", [
    ('**Prompt:** "A red fox in fresh snow, golden hour, shallow depth of field."',
     "A red fox in fresh snow, golden hour, shallow depth of field."),
    ("<think>Tags then.</think>```\n1girl, red hair, forest, sunlight\n```", "1girl, red hair, forest, sunlight"),
    ("Prompt: a cat", "a cat"),
])
def test_prompt_cleanup(answer, prompt):
    assert parse_prompt(answer) == prompt


def test_ocr_text_keeps_lines_and_drops_fence_and_thinking():
    assert parse_plain("<think>receipt</think>```text\nAuntie Anne's\nCINNAMON SUGAR\n1 x 17,000\n```") == (
        "Auntie Anne's\nCINNAMON SUGAR\n1 x 17,000")
    assert parse_plain("  GRAND TOTAL 17,000  ") == "GRAND TOTAL 17,000"


# ------------------------------------------------------------------------------------ hostile text

HOSTILE = {
    "deep_json_array": '{"bbox_2d": [1, 2, 3, 4], "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "deep_json_object": '{"bbox_3d": [0, 0, 5, 1, 1, 1, 0, 0, 0], "x": ' + '{"a":' * 5000 + "1" + "}" * 5001,
    "unclosed_braces": "{" * 200_000,
    "digits_and_dashes": "1" * 50_000 + " - " + "2" * 50_000,
    "deep_html": '<div data-bbox="1 2 3 4">' * 5_000 + "text",
    # Python's html.parser needs minutes on these (quadratic); the document scanner is linear
    "open_comments": "<!--" * 50_000,
    "open_tags": "<a " * 50_000,
    "open_attributes": '<p data-bbox="' * 30_000,
    "fences_and_links": "```[a](" * 30_000,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_text_never_raises(name):
    text = HOSTILE[name]
    start = time.perf_counter()
    parse_spotting(text, *WIDE)
    parse_points(text, *WIDE)
    parse_gui(text, *WIDE)
    parse_boxes_3d(text)
    parse_events(text)
    parse_html(text, *WIDE)
    parse_markdown(text, *WIDE)
    parse_prompt(text)
    assert time.perf_counter() - start < 60
