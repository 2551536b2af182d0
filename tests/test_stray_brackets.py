"""Qwen answers with a stray ``{`` or ``[`` (or a broken object) inside a list: every complete object is kept and
what was skipped is counted (``dropped_incomplete``), in Parse Grounding's JSON output too.

The answers are written in the layout of Qwen's cookbooks (2d_grounding, spatial_understanding: a fenced JSON
list, one tab-indented object per line) with the fault the cookbooks show: ``},\\n\\t{\\n\\t{"bbox_2d": ...``.
"""

from __future__ import annotations

import json

import pytest
import torch

from qwen3vl_pack.utils.grounding import parse_grounding
from qwen3vl_pack.utils.grounding_render import grounding_outputs
from qwen3vl_pack.utils.model_json import object_spans, read_objects
from qwen3vl_pack.utils.task_parsers import parse_boxes_3d, parse_events, parse_points, parse_spotting

LABELS = ["person", "bicycle", "car", "dog", "cat", "traffic light", "bench", "backpack", "umbrella"]
BOXES = [[10 * i + 5, 20 * i + 10, 10 * i + 100, 20 * i + 200] for i in range(9)]


def _line(i: int) -> str:
    return '\t{"bbox_2d": ' + json.dumps(BOXES[i]) + ', "label": "' + LABELS[i] + '"}'


def _answer(after_fifth: str = "", tail: str = "\n]\n```") -> str:
    lines = [_line(i) for i in range(9)]
    body = ",\n".join(lines[:5]) + "," + after_fifth + "\n" + ",\n".join(lines[5:])
    return "```json\n[\n" + body + tail


CASES = {
    # name: (answer, boxes kept (indices), fragments counted)
    "clean": (_answer(), list(range(9)), 0),
    "stray { before the sixth (cookbook)": (_answer("\n\t{"), list(range(9)), 1),
    "stray [ before the sixth": (_answer("\n\t["), list(range(9)), 0),
    "stray {[ before the sixth": (_answer("\n\t{["), list(range(9)), 1),
    "two stray {": (_answer("\n\t{\n\t{"), list(range(9)), 2),
    "stray { and the list cut off": (_answer("\n\t{", tail=',\n\t{"bbox_2d": [1, 2'), list(range(9)), 2),
    "stray { and no closing ]": (_answer("\n\t{", tail=""), list(range(9)), 1),
    "stray } after the fifth": (_answer("\n\t}"), list(range(9)), 0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_complete_box_is_kept(case):
    answer, kept, skipped = CASES[case]
    result = parse_grounding(answer, 1000, 1000)
    assert [d.label for d in result.detections] == [LABELS[i] for i in kept]
    assert [list(d.box) for d in result.detections] == [[float(v) for v in BOXES[i]] for i in kept]
    assert result.dropped_incomplete == skipped and result.found_json


def test_parse_grounding_json_output_counts_the_stray_brace():
    answer = _answer("\n\t{")
    out = grounding_outputs(torch.rand(1, 1000, 1000, 3), [answer])
    report = json.loads(out.json)[0]
    assert len(report["detections"]) == 9 and report["dropped_incomplete"] == 1
    assert len(out.bboxes[0]) == 9


BROKEN = {
    # a broken object: its complete neighbours are kept, and so are complete objects inside it
    "stray [ inside an object": ('[{"bbox_2d": [1, 2, 30, 40], "label": ["cat"},\n{"bbox_2d": [5, 6, 70, 80], '
                                 '"label": "dog"}]', ["dog"], 1),
    "an object inside a broken one": ('[{"bbox_2d": [1, 2, 30, 40], {"bbox_2d": [5, 6, 70, 80], "label": "b"}},\n'
                                      '{"bbox_2d": [9, 9, 90, 90], "label": "c"}]', ["b", "c"], 1),
    "a missing comma between keys": ('[{"bbox_2d": [1, 2, 30, 40] "label": "a"}, {"bbox_2d": [5, 6, 70, 80], '
                                     '"label": "b"}]', ["b"], 1),
    "brace inside a label is text": ('[{"bbox_2d": [1, 2, 30, 40], "label": "a {b"}, {"bbox_2d": [5, 6, 70, 80], '
                                     '"label": "c}"}]', ["a {b", "c}"], 0),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_objects_do_not_take_their_neighbours(case):
    answer, labels, skipped = BROKEN[case]
    result = parse_grounding(answer, 1000, 1000)
    assert [d.label for d in result.detections] == labels and result.dropped_incomplete == skipped


def test_points_spotting_3d_and_events_keep_objects_after_a_stray_brace():
    points = ('```json\n[\n\t{"point_2d": [100, 200], "label": "a"},\n\t{\n\t{"point_2d": [300, 400], "label": "b"},'
              '\n\t{"point_2d": [500, 600], "label": "c"}\n]\n```')
    result = parse_points(points, 1000, 1000)
    assert [d.label for d in result.detections] == ["a", "b", "c"] and result.dropped_incomplete == 1
    spotting = ('[{"bbox_2d": [10, 10, 100, 50], "text_content": "GRAND"},\n{\n{"bbox_2d": [10, 60, 100, 90], '
                '"text_content": "TOTAL"}]')
    result = parse_spotting(spotting, 1000, 1000)
    assert [d.label for d in result.detections] == ["GRAND", "TOTAL"] and result.dropped_incomplete == 1
    boxes3d = ('```json\n[\n\t{"bbox_3d": [2.88, 0.56, 6.28, 4.45, 1.7, 1.84, 0.75, 0.49, 0.75], "label": "car"},\n\t{'
               '\n\t{"bbox_3d": [2.83, 0.58, 14.78, 4.43, 1.56, 1.77, 0.3, 0.1, 0.2], "label": "car"}\n]\n```')
    result = parse_boxes_3d(boxes3d)
    assert len(result.boxes) == 2 and result.dropped_incomplete == 1
    events = ('{"events": [{"timestamp": "00:05.00 - 00:07.50", "event": "door opens"}, {\n'
              '{"timestamp": "00:09.00 - 00:12.00", "event": "a dog runs in"}]}')
    result = parse_events(events)
    assert [e.description for e in result.events] == ["door opens", "a dog runs in"]
    assert result.dropped_incomplete >= 1


def test_scan_stays_linear_on_hostile_text():
    """Many stray braces, deep nesting and long answers: one pass, no recursion, every fragment counted."""
    import time

    text = "{" * 200_000 + '{"bbox_2d": [1, 2, 3, 4]}' + "[" * 100_000
    start = time.perf_counter()
    values, found, skipped = read_objects(text, 32)
    assert time.perf_counter() - start < 30  # a quadratic rescan of 200,000 strays would take hours
    assert skipped >= 1
    spans, _ = object_spans('{"a": 1} {"b": {"c": 2}}', 32)
    assert [(s.start, s.end) for s in spans] == [(0, 8), (9, 24)]
