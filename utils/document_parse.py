"""Qwen3-VL document parsing answers ("qwenvl html" / "qwenvl markdown") -> document, plain text, boxes.

QwenVL HTML puts a relative 0..1000 box on each element: ``<p data-bbox="99 339 869 565">...</p>``.
QwenVL Markdown marks images and tables with ``<!-- Image (x1, y1, x2, y2) -->`` comments (Qwen3-VL
``cookbooks/document_parsing.ipynb``, whose ``draw_bbox_html`` skips ``<ol>`` and draws every other
element with a ``data-bbox``). Answers are read by a small linear tag scanner (the standard library's
HTMLParser is quadratic on some broken input), so unclosed tags, stray end tags and a page cut off by
``max_new_tokens`` still give every complete box, and hostile text costs linear time.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from html import unescape

from .grounding import ParseResult
from .task_parsers import boxes_each, guarded, unfenced

BLOCK_TAGS = frozenset("address article aside blockquote body br caption dd div dl dt figcaption figure footer h1 h2 "
                       "h3 h4 h5 h6 header hr html li main nav ol p pre section table tbody thead tfoot tr ul".split())
CELL_TAGS = frozenset(("td", "th"))
VOID_TAGS = frozenset("area base br col embed hr img input link meta source track wbr".split())
SKIP_TAGS = frozenset(("script", "style"))
# Tags whose end tag HTML lets out: they end where one of these tags starts.
IMPLIED_END = {"p": (BLOCK_TAGS | CELL_TAGS | {"li"}) - {"br", "hr"}, "li": frozenset(("li",)), "dt": frozenset(("dt", "dd")),
               "dd": frozenset(("dt", "dd")), "td": frozenset(("td", "th", "tr")), "th": frozenset(("td", "th", "tr")),
               "tr": frozenset(("tr",))}
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]{0,40})((?:\s[^<>]{0,4000}?)?)\s*(/?)>")
_ATTR = re.compile(r"""([A-Za-z_:][-A-Za-z0-9_:.]{0,60})\s*(?:=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?""")
_NOISE = re.compile(r"<!--.*?(?:-->|\Z)|<[!?][^<>]{0,4000}>", re.DOTALL)  # comments, doctype, <?xml ...?>
_SPACES, _AROUND_TAB = re.compile(r"[ \u00a0\r\f\v]+"), re.compile(r"[ \t\u00a0]*\t[ \t\u00a0]*")
MAX_ELEMENT_TEXT = 20_000  # characters of one element's text kept as its label
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_MD_BOX = re.compile(r"<!--\s*(Image|Table)\s*\(\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*\)\s*-->",
                     re.IGNORECASE)
_MD_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
_MD_MARKUP = [(re.compile(r"^\s{0,3}#{1,6}\s+"), ""), (re.compile(r"^\s{0,3}(?:[-*+]|\d+\.)\s+"), ""),
              (re.compile(r"!\[([^\]\n]{0,300})\]\([^)\n]{0,300}\)"), r"\1"),
              (re.compile(r"\[([^\]\n]{0,300})\]\([^)\n]{0,300}\)"), r"\1"),
              (re.compile(r"(\*\*|__|`)"), ""), (re.compile(r"^\s*\|?\s*:?-{3,}.*$"), ""),
              (re.compile(r"\s*\|\s*"), "\t")]


@dataclass
class DocumentResult:
    """A parsed document page: its markup, its plain text and the element boxes (pixels, with tag and text)."""

    document: str = ""
    text: str = ""
    boxes: ParseResult = field(default_factory=ParseResult)
    tags: list[str] = field(default_factory=list)  # per box: the element tag ('p', 'h2', 'img'...) or Image/Table


class _Collector:
    """Plain text of an HTML answer and its ``data-bbox`` elements, in document order (no recursion)."""

    def __init__(self):
        self.chunks: list[str] = []
        self.size = 0
        self.stack: list[tuple[str, int | None]] = []  # (tag, index into self.elements)
        self.elements: list[dict] = []
        self.open: Counter[str] = Counter()  # open elements by tag: stray end tags are found in O(1)
        self.skipping = 0

    def feed(self, markup: str) -> None:
        markup, position = _NOISE.sub(" ", markup), 0
        for m in _TAG.finditer(markup):
            self.handle_data(unescape(markup[position:m.start()]))
            position = m.end()
            closing, tag, attrs, self_closing = m.group(1), m.group(2).lower(), m.group(3), m.group(4)
            if closing:
                self.handle_endtag(tag)
                continue
            values = {a.group(1).lower(): unescape(next((g for g in a.groups()[1:] if g is not None), ""))
                      for a in _ATTR.finditer(attrs)}
            self.handle_starttag(tag, values)
            if self_closing and tag not in VOID_TAGS and self.stack and self.stack[-1][0] == tag:
                self.handle_endtag(tag)
        self.handle_data(unescape(markup[position:]))

    def _emit(self, text: str) -> None:
        self.chunks.append(text)
        self.size += len(text)

    def handle_starttag(self, tag: str, values: dict) -> None:
        if tag in SKIP_TAGS:
            self.skipping += 1
        while self.stack and tag in IMPLIED_END.get(self.stack[-1][0], ()):
            self._close(*self.stack.pop())  # <p>a<p>b, <li>a<li>b, <td>a<td>b: the first one ends here
        if tag in BLOCK_TAGS:
            self._emit("\n")
        elif tag in CELL_TAGS:
            self._emit("\t")
        index = None
        if "data-bbox" in values and tag != "ol" and not self._repeats_parent(tag, values["data-bbox"]):
            index = len(self.elements)
            self.elements.append({"tag": tag, "data-bbox": values["data-bbox"] or "", "start": self.size,
                                  "end": None})
        if tag not in VOID_TAGS:
            self.stack.append((tag, index))
            self.open[tag] += 1
        elif index is not None:
            self.elements[index]["end"] = self.size

    def _repeats_parent(self, tag: str, bbox: str) -> bool:
        """``<div class="image" data-bbox="A"><img data-bbox="A"/></div>``: one box, not two."""
        if tag not in VOID_TAGS or not self.stack or self.stack[-1][1] is None:
            return False
        return self.elements[self.stack[-1][1]]["data-bbox"] == bbox

    def handle_endtag(self, tag: str) -> None:
        if not self.open[tag]:
            return  # a stray end tag: ignore it
        while self.stack:
            open_tag, index = self.stack.pop()
            self._close(open_tag, index)
            if open_tag == tag:
                break

    def _close(self, tag: str, index: int | None) -> None:
        self.open[tag] -= 1
        if tag in SKIP_TAGS:
            self.skipping = max(0, self.skipping - 1)
        if index is not None:
            self.elements[index]["end"] = self.size
        if tag in BLOCK_TAGS:
            self._emit("\n")

    def handle_data(self, data: str) -> None:
        if data and not self.skipping:
            self._emit(data)

    def finish(self) -> tuple[str, list[dict]]:
        while self.stack:  # unclosed elements end where the answer ends
            self._close(*self.stack.pop())
        full = "".join(self.chunks)
        for element in self.elements:
            end = min(element["end"], element["start"] + MAX_ELEMENT_TEXT)  # bounded: nested elements share text
            element["text"] = " ".join(full[element["start"]:end].split())
        return full, self.elements


def _clean_lines(text: str) -> str:
    lines = []
    for line in text.splitlines():
        line = _AROUND_TAB.sub("\t", _SPACES.sub(" ", line)).strip()
        if line.strip("\t "):
            lines.append(line.strip("\t"))
    return "\n".join(lines)


def _relative_box(spec: str) -> list[float] | None:
    numbers = _NUMBER.findall(spec[:200])
    return [float(n) for n in numbers] if len(numbers) == 4 else None


def _collect(markup: str) -> tuple[str, list[dict]]:
    collector = _Collector()
    collector.feed(markup)
    return collector.finish()


def parse_html(text: str, width: int, height: int) -> DocumentResult:
    """A QwenVL HTML answer -> the HTML, its plain text and the ``data-bbox`` boxes in pixels."""
    document = unfenced(text)
    full, elements = guarded(_collect, ("", []), document)
    objects = [{"bbox_2d": _relative_box(e["data-bbox"]), "label": e["text"]} for e in elements]
    boxes, kept = boxes_each(objects, width, height)
    boxes.found_json = bool(elements)
    return DocumentResult(document, _clean_lines(full), boxes, [elements[i]["tag"] for i in kept])


def parse_markdown(text: str, width: int, height: int) -> DocumentResult:
    """A QwenVL Markdown answer -> the Markdown, its plain text and the Image/Table boxes in pixels."""
    document = unfenced(text)
    found = [(m.group(1).capitalize(), [float(v) for v in m.groups()[1:]]) for m in _MD_BOX.finditer(document)]
    boxes, _ = boxes_each([{"bbox_2d": box, "label": kind} for kind, box in found], width, height)
    boxes.found_json = bool(found)
    full, _ = guarded(_collect, ("", []), _MD_COMMENT.sub("", document))
    lines = []
    for line in full.splitlines():
        for pattern, repl in _MD_MARKUP:
            line = pattern.sub(repl, line)
        lines.append(line)
    return DocumentResult(document, _clean_lines("\n".join(lines)), boxes, [d.label for d in boxes.detections])
