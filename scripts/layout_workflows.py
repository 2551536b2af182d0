"""Lay out UI workflows so every node shows all its widgets, nothing overlaps and the saved view shows it all.

    python scripts/layout_workflows.py workflows/*.json --sizes .frontend/sizes-*.json [--migrate]

- ``--sizes``: what ComfyUI's frontend computes for every node (``scripts/frontend_nodes.py --sizes-out``, one
  file per frontend); a node gets at least the largest of them (and keeps a larger saved size: text boxes and
  image previews have no natural size).
- Nodes go in columns by their depth in the graph (sources left), a column taller than the chosen height wraps
  into a second one; Notes go in their own column at the left or under the shortest column, whichever lets the
  saved view show everything larger. Every arrangement tried is scored by the scale at which the whole graph
  (titles included) fits a 1280x800 window below the menu bar and right of the side bar; the best is kept.
- ``--migrate``: Qwen3VL_Task nodes (first layout) become Qwen3VL_RunTask (+ a Task Options node when their
  language, style or fov is not the default), values moved by name, links re-pointed.

Idempotent: running it again on its own output changes nothing. Needs no ComfyUI.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TITLE = 30  # LiteGraph.NODE_TITLE_HEIGHT: the title bar is drawn above pos
GAP_X, GAP_Y = 40, 24
VIEW = (1280, 800)
# 1.58's side bar (left), tabs and Run bar (top), minimap (bottom right, 250 px wide) and zoom bar; 1.27's menu
MARGIN = {"left": 90, "top": 100, "right": 60, "bottom": 60}
# The minimap (bottom right): on screen from x 985 / y 535 (1.27, whose canvas starts 40 px right of and below the
# window's corner) and x 1020 / y 540 (1.58); in canvas pixels nothing may reach into x >= 935, y >= 485.
MINIMAP = (935, 485)
# A workflow that needs a model file or a node a fresh ComfyUI may lack (SAM3) opens with a warning toast at the
# top right (1.49: from x 805, 1.58: from x 855; down to y 215): keep clear of it there.
TOAST = (795, 220)
TOAST_TYPES = {"CheckpointLoaderSimple", "SAM3_Detect", "Qwen3VL_GGUFModel"}
NOTES = {"Note", "MarkdownNote"}
# The frontends draw node text only from a scale of 8 px / 14 px = 0.57 (1.49/1.58 MinFontSizeForLOD 8, 1.27 alike);
# below it widgets are grey bars. The saved view never goes below this.
MIN_SCALE = 0.6
# Nodes whose size is free (a text or image preview grows with them): this size, or what the frontend computes.
FREE_SIZES = {"PreviewAny": (300, 150), "PreviewImage": (280, 250)}
OLD_TASK_WIDGETS = ["task", "target", "language", "style", "fov", "max_new_tokens", "preset", "seed", "control",
                    "max_visual_tokens"]
TASK_SOCKETS = [("model", "QWEN3VL_MODEL"), ("image", "IMAGE"), ("video", "IMAGE"), ("video_fps", "FLOAT"),
                ("sampling", "QWEN3VL_SAMPLING"), ("task_options", "QWEN3VL_TASK_OPTIONS")]
TASK_OPTION_DEFAULTS = {"language": "auto", "style": "Flux medium", "fov": 60.0}


def migrate_task(wf: dict) -> int:
    """Qwen3VL_Task -> Qwen3VL_RunTask in place; returns how many nodes changed."""
    changed = 0
    for node in [n for n in wf["nodes"] if n["type"] == "Qwen3VL_Task"]:
        old = dict(zip(OLD_TASK_WIDGETS, node["widgets_values"], strict=False))
        if old.get("seed", 0) != 0 and old.get("preset") != "Greedy":
            raise SystemExit(f"node {node['id']}: a sampled preset with seed {old['seed']} needs a Sampling node; "
                             "migrate it by hand")
        by_name = {i["name"]: i.get("link") for i in node.get("inputs", [])}
        node["type"] = "Qwen3VL_RunTask"
        node.setdefault("properties", {})["Node name for S&R"] = "Qwen3VL_RunTask"
        node["widgets_values"] = [old["task"], old["target"], old["preset"], old["max_new_tokens"],
                                  old.get("max_visual_tokens", 0)]
        node["inputs"] = [{"name": n, "type": t, "link": by_name.get(n)} for n, t in TASK_SOCKETS]
        extra = {k: old[k] for k in TASK_OPTION_DEFAULTS if old.get(k) != TASK_OPTION_DEFAULTS[k]}
        if extra:
            _add_task_options(wf, node, {**TASK_OPTION_DEFAULTS, **extra})
        for link in wf["links"]:
            if link[3] == node["id"]:
                link[4] = next(i for i, inp in enumerate(node["inputs"]) if inp["link"] == link[0])
        changed += 1
    return changed


def _add_task_options(wf: dict, task: dict, values: dict) -> None:
    wf["last_node_id"] += 1
    wf["last_link_id"] += 1
    nid, lid = wf["last_node_id"], wf["last_link_id"]
    wf["nodes"].append({"id": nid, "type": "Qwen3VL_TaskOptions", "pos": [0, 0], "size": [300, 110], "flags": {},
                        "order": 0, "mode": 0, "inputs": [], "properties": {"Node name for S&R": "Qwen3VL_TaskOptions"},
                        "outputs": [{"name": "task_options", "type": "QWEN3VL_TASK_OPTIONS", "links": [lid],
                                     "slot_index": 0}],
                        "widgets_values": [values["language"], values["style"], values["fov"]]})
    next(i for i in task["inputs"] if i["name"] == "task_options")["link"] = lid
    wf["links"].append([lid, nid, 0, task["id"], 0, "QWEN3VL_TASK_OPTIONS"])


def load_sizes(files: list[Path]) -> dict[str, dict[int, list[float]]]:
    """{workflow file name: {node id: [w, h]}}, the largest over every frontend measured."""
    sizes: dict[str, dict[int, list[float]]] = {}
    for f in files:
        for row in json.loads(f.read_text(encoding="utf-8")):
            per = sizes.setdefault(row["workflow"], {})
            old = per.get(row["id"], [0, 0])
            per[row["id"]] = [max(old[0], row["computed"][0]), max(old[1], row["computed"][1])]
    return sizes


def _depths(wf: dict) -> dict[int, int]:
    ids = {n["id"] for n in wf["nodes"] if n["type"] not in NOTES}
    parents: dict[int, set[int]] = {i: set() for i in ids}
    for link in wf["links"]:
        if link[1] in ids and link[3] in ids:
            parents[link[3]].add(link[1])
    depth: dict[int, int] = {}

    def walk(i: int, seen: tuple = ()) -> int:
        if i not in depth:
            depth[i] = 1 + max((walk(p, seen + (i,)) for p in parents[i] if p not in seen), default=-1)
        return depth[i]

    for i in ids:
        walk(i)
    return depth


def _columns(wf: dict, sizes: dict[int, list[float]], max_h: float) -> list[list[dict]]:
    """Non-Note nodes in columns by depth, ordered by their parents' places, wrapped above ``max_h``."""
    depth = _depths(wf)
    by_id = {n["id"]: n for n in wf["nodes"]}
    parents: dict[int, list[int]] = {i: [] for i in depth}
    for link in wf["links"]:
        if link[3] in depth and link[1] in depth:
            parents[link[3]].append(link[1])
    place: dict[int, float] = {}
    columns: list[list[dict]] = []
    for d in range(max(depth.values(), default=-1) + 1):
        members = [i for i in depth if depth[i] == d]
        members.sort(key=lambda i: (sum(place[p] for p in parents[i]) / len(parents[i]) if parents[i] else 0,
                                    by_id[i]["type"] != "Qwen3VL_ModelLoader", i))  # not on current positions
        column: list[dict] = []
        height = 0.0
        for rank, i in enumerate(members):
            place[i] = rank
            h = sizes[i][1] + TITLE
            if column and height + h > max_h:
                columns.append(column)
                column, height = [], 0.0
            column.append(by_id[i])
            height += h + GAP_Y
        columns.append(column)
    return columns


def _clear_of(pos: dict, sizes: dict, scale: float, corner: tuple[float, float], below: bool) -> float:
    """The largest scale <= ``scale`` at which no node reaches into the screen corner beyond ``corner`` (x right of
    it and y below it when ``below``, else above it); 0 when shrinking cannot clear a node."""
    for i, p in pos.items():
        right = p[0] + sizes[i][0]
        top, bottom = p[1] - TITLE, p[1] + sizes[i][1]
        into_x = MARGIN["left"] + right * scale > corner[0]
        into_y = (MARGIN["top"] + bottom * scale > corner[1]) if below else (MARGIN["top"] + top * scale < corner[1])
        if into_x and into_y:
            if MARGIN["left"] + p[0] * scale >= corner[0] and not below:
                return 0.0  # a node right of the corner is under it at any scale
            fit_x = (corner[0] - MARGIN["left"]) / right
            fit_y = (corner[1] - MARGIN["top"]) / bottom if below else scale
            scale = min(scale, max(fit_x, fit_y) if below else fit_x)
    return scale


def _arrange(wf: dict, sizes: dict[int, list[float]], max_h: float, note_column: int,
             drop: tuple[float, float] = (0.0, 0.0)) -> tuple[float, dict]:
    """Positions for one arrangement and the scale at which it fits the view (0 when nodes would overlap).

    ``note_column`` -1: the Notes get their own column at the left; else they go under that column. ``drop``
    (x, dy): columns starting right of canvas x start dy lower (clear of a toast at the top right)."""
    columns = _columns(wf, sizes, max_h)
    notes = [n for n in wf["nodes"] if n["type"] in NOTES]
    notes_left = note_column < 0
    if note_column >= len(columns):
        return 0.0, {}
    if notes_left and notes:
        columns.insert(0, notes)
    pos: dict[int, list[float]] = {}
    x = 0.0
    heights = []
    for column in columns:
        y = TITLE + (drop[1] if drop[1] and x >= drop[0] else 0.0)
        for node in column:
            pos[node["id"]] = [x, y]
            y += sizes[node["id"]][1] + TITLE + GAP_Y
        heights.append(y - GAP_Y)
        x += max(sizes[n["id"]][0] for n in column) + GAP_X
    if notes and not notes_left:
        cx = pos[columns[note_column][0]["id"]][0] if columns[note_column] else 0.0
        y = heights[note_column] + GAP_Y + TITLE
        for node in notes:
            pos[node["id"]] = [cx, y]
            y += sizes[node["id"]][1] + TITLE + GAP_Y
    width = max(p[0] + sizes[i][0] for i, p in pos.items())
    height = max(p[1] + sizes[i][1] for i, p in pos.items())
    boxes = {"nodes": [{"id": i, "pos": p, "size": sizes[i]} for i, p in pos.items()]}
    if overlaps(boxes, GAP_Y / 2):
        return 0.0, pos
    usable_w = VIEW[0] - MARGIN["left"] - MARGIN["right"]
    usable_h = VIEW[1] - MARGIN["top"] - MARGIN["bottom"]
    scale = min(1.0, usable_w / width, usable_h / height)
    scale = _clear_of(pos, sizes, scale, MINIMAP, below=True)
    if any(n["type"] in TOAST_TYPES for n in wf["nodes"]):
        scale = _clear_of(pos, sizes, scale, TOAST, below=False)
    return scale, pos


def layout(wf: dict, measured: dict[int, list[float]]) -> float:
    """Sizes, positions and the saved view of ``wf``, in place; returns the view's scale."""
    sizes = {}
    for node in wf["nodes"]:
        got = measured.get(node["id"], [0, 0])
        base = FREE_SIZES.get(node["type"], node["size"]) if node["id"] in measured else node["size"]
        sizes[node["id"]] = [float(max(base[0], got[0])), float(max(base[1], got[1]))]
        node["size"] = [round(v) + (1 if round(v) < v else 0) for v in sizes[node["id"]]]
        sizes[node["id"]] = node["size"]
    tallest = max(s[1] + TITLE for s in sizes.values())
    options = [(h, c) for h in range(int(tallest), 3001, 50) for c in range(-1, len(wf["nodes"]))]
    drops = [(0.0, 0.0)]
    if any(n["type"] in TOAST_TYPES for n in wf["nodes"]):  # guess the scale, start the columns under the toast
        drops += [((TOAST[0] - MARGIN["left"] - 60) / g, (TOAST[1] - MARGIN["top"]) / g + GAP_Y)
                  for g in (0.75, 0.7, 0.65, 0.6, 0.55, 0.5)]
    scale, pos = max((_arrange(wf, sizes, h, c, d) for h, c in options for d in drops), key=lambda r: r[0])
    for node in wf["nodes"]:
        node["pos"] = pos[node["id"]]
    scale = int(scale * 100) / 100
    wf.setdefault("extra", {})["ds"] = {"scale": scale, "offset": [MARGIN["left"] / scale,
                                                                  MARGIN["top"] / scale]}
    return scale


def overlaps(wf: dict, margin: float = 0.0) -> list[tuple[int, int]]:
    """Pairs of nodes whose boxes (title bar included, grown by ``margin``) intersect."""
    boxes = [(n["id"], n["pos"][0] - margin, n["pos"][1] - TITLE - margin, n["pos"][0] + n["size"][0] + margin,
              n["pos"][1] + n["size"][1] + margin) for n in wf["nodes"]]
    found = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            if a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]:
                found.append((a[0], b[0]))
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workflows", nargs="+", type=Path)
    ap.add_argument("--sizes", nargs="*", type=Path, default=[], help="frontend_nodes.py --sizes-out files")
    ap.add_argument("--migrate", action="store_true", help="Qwen3VL_Task -> Qwen3VL_RunTask")
    args = ap.parse_args()
    sizes = load_sizes(args.sizes)
    for path in args.workflows:
        wf = json.loads(path.read_text(encoding="utf-8"))
        moved = migrate_task(wf) if args.migrate else 0
        scale = layout(wf, sizes.get(path.name, {}))
        bad = overlaps(wf)
        path.write_text(json.dumps(wf, indent=2) + "\n", encoding="utf-8")
        sys.stderr.write(f"{path.name}: view scale {scale}, {moved} Task node(s) migrated, overlaps {bad}\n")
        if bad or scale < MIN_SCALE:
            sys.stderr.write(f"{path.name}: " + ("overlaps" if bad else f"scale {scale} < {MIN_SCALE}: text would "
                                                 "not be drawn; make the workflow smaller") + "\n")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
