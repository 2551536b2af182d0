"""JSON objects in model text, keeping every complete one whatever stray brackets surround it.

Qwen's answers are JSON lists of objects, usually well formed, sometimes not: a stray ``{`` or ``[`` inside the
list (``},\\n\\t{\\n\\t{"bbox_2d": [...]``, seen in Qwen's own cookbooks), a broken object, an answer cut off by
max_new_tokens. One linear scan finds every ``{...}`` that closes; one that never closes (a stray or a cut-off
object) does not swallow the complete objects after it, and a span that does not parse gives way to the complete
objects inside it. Each stray, broken or unclosed fragment is counted (``dropped_incomplete`` in the outputs).
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field

_TRAILING_COMMA = re.compile(r",\s*([}\]])")


@dataclass
class Span:
    """A ``{...}`` that closes: where it is and the spans inside it."""

    start: int
    end: int
    children: list[Span] = field(default_factory=list)


def object_spans(text: str, max_depth: int) -> tuple[list[Span], int]:
    """The outermost closed ``{...}`` spans (string-aware), including those inside a ``{`` that never closes;
    and how many fragments never closed (a stray ``{``, a cut-off tail) plus how many objects were nested deeper
    than ``max_depth`` brackets (those are never parsed: they would only recurse)."""
    opens: list[list] = []  # [start, deepest level inside, closed spans inside, level at the start]
    top: list[Span] = []
    level = deepest_all = too_deep = 0
    quote, escaped = "", False
    for i, ch in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif opens and ch in "\"'":
            quote = ch
        elif ch in "{[":
            level += 1
            deepest_all = max(deepest_all, level)
            if ch == "{":
                opens.append([i, level, [], level])
            elif opens:
                opens[-1][1] = max(opens[-1][1], level)
        elif ch == "]":
            level = max(level - 1, 0)
        elif ch == "}" and opens:
            start, deepest, children, at_start = opens.pop()
            level = at_start - 1  # a stray "[" inside the object does not count for the rest of the text
            if deepest > max_depth:
                too_deep += 1
                continue
            span = Span(start, i + 1, children)
            if opens:
                opens[-1][1] = max(opens[-1][1], deepest)
                opens[-1][2].append(span)
            else:
                top.append(span)
    for _, _, children, _ in opens:  # complete objects inside a stray or cut-off "{" are kept, in text order
        top += children
    if deepest_all > max_depth and not too_deep:
        too_deep = 1
    # unclosed: every "{" up to the last one that wraps complete objects (strays), plus one for the rest (an
    # object cut off by max_new_tokens, however deep it was when the answer stopped)
    last = max((k for k, entry in enumerate(opens) if entry[2]), default=-1)
    unclosed = last + 1 + int(len(opens) > last + 1)
    return top, unclosed + too_deep


def loads(span: str):
    """JSON, then JSON without trailing commas, then a Python literal (single quotes); None when none reads."""
    for candidate in (span, _TRAILING_COMMA.sub(r"\1", span)):
        try:
            return json.loads(candidate)
        except (ValueError, RecursionError):
            continue
    pythonish = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", re.sub(r"\bnull\b", "None", span)))
    try:
        return ast.literal_eval(pythonish)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def read_objects(text: str, max_depth: int) -> tuple[list, bool, int]:
    """(every readable object, whether any ``{...}`` closed, how many fragments were skipped)."""
    spans, skipped = object_spans(text, max_depth)
    values: list = []
    todo = list(reversed(spans))
    while todo:
        span = todo.pop()
        value = loads(text[span.start:span.end])
        if value is None:
            skipped += 1
            todo.extend(reversed(span.children))  # the complete objects inside a broken one
        else:
            values.append(value)
    return values, bool(spans), skipped
