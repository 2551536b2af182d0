"""Open workflows in ComfyUI's real frontend (headless Chromium) and report what a user would see.

For every node of every workflow: its size and the size the frontend computes (``--sizes-out`` keeps them for
``scripts/layout_workflows.py``); overlaps (title bars included); nodes the saved view leaves off screen or under
the menu / side bar at 1280x800 (what is on top at their corners); and the value round-trip: the widget values
the frontend saves again (``graph.serialize()``) and sends (``app.graphToPrompt()``) against the file's, for every
pack node, by input name. Screenshots of the saved view with ``--shoot NAME.json``.

    python scripts/frontend_nodes.py workflows/*.json --comfy-dir /work/comfy/v0364 \
        --python /work/comfy/venv-v0364/bin/python \
        --frontend-root /work/comfy/fe-1.58.1/comfyui_frontend_package/static \
        --sizes-out .frontend/sizes-1.58.1.json --shoot describe_image.json --out .frontend/shots-1.58.1

(or ``--base http://127.0.0.1:PORT`` for a ComfyUI already running with the pack). Needs playwright in the Python
that runs it and /usr/bin/chromium. Prints the report as JSON; exit 1 when something is wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from workflow_check import widget_inputs  # noqa: E402  (the order the frontend saves widget values in)

VIEW = {"width": 1280, "height": 800}
INPUTS = ("sample.png", "qwen3vl_clip.mp4")  # else the frontend's "media input missing" toast covers nodes

MEASURE = """async (wf) => {
    const TASK_HIDES = {"Qwen3VL_RunTask": ["target"]};
    await window.app.loadGraphData(wf, true, true, null, {showMissingNodesDialog: false,
                                                          showMissingModelsDialog: false});
    await new Promise(r => setTimeout(r, 800));
    const canvas = window.app.canvas;
    canvas.draw(true, true);
    const graph = window.app.graph;
    const nodes = graph._nodes || graph.nodes;
    const saved = Object.fromEntries(graph.serialize().nodes.map(n => [n.id, n]));
    const prompt = (await window.app.graphToPrompt()).output;
    const titleH = window.LiteGraph.NODE_TITLE_HEIGHT || 30;
    const el = canvas.canvas;
    const box = el.getBoundingClientRect();
    const ds = canvas.ds;
    const covered = (x, y) => {
        const sx = box.x + (x + ds.offset[0]) * ds.scale, sy = box.y + (y + ds.offset[1]) * ds.scale;
        if (sx < 0 || sy < 0 || sx > window.innerWidth || sy > window.innerHeight) return "outside the window";
        const top = document.elementFromPoint(sx, sy);
        if (top === el) return null;
        if (!top) return "nothing";
        return top.tagName.toLowerCase() + (top.className && typeof top.className === "string"
                                            ? "." + top.className.split(" ")[0] : "");
    };
    // LoadVideo's preview computes a width a fixed step wider than the node itself, whatever that is (340 -> 444,
    // 450 -> 554): not a minimum. Its height (for the node's width) still is.
    // A widget the pack's extension hides for the chosen task (Task's target) comes back with another task: a node
    // needs room for it, so it counts here.
    const needed = (n) => {
        const back = (n.widgets || []).filter(w => w.hidden && (TASK_HIDES[n.type] || []).includes(w.name));
        const own = back.map(w => w.computeSize);  // the extension's -4 px stand-in, while hidden
        back.forEach(w => { w.hidden = false; w.computeSize = w.qwen3vlComputeSize; });
        const c = [...n.computeSize()];
        back.forEach((w, i) => { w.hidden = true; w.computeSize = own[i]; });
        return n.type === "LoadVideo" ? [n.size[0], c[1]] : c;
    };
    return {scale: ds.scale, title_height: titleH, nodes: nodes.map(n => {
        const [x, y] = n.pos, [w, h] = n.size;
        const corners = [[x + 2, y - titleH + 2], [x + w - 2, y - titleH + 2]];
        return {
            id: n.id, type: n.type, pos: [...n.pos], size: [...n.size], computed: needed(n),
            widgets: (n.widgets || []).filter(w => !w.hidden && w.type !== "hidden").map(w => w.name),
            hidden_widgets: (n.widgets || []).filter(w => w.hidden).map(w => w.name),
            labels: Object.fromEntries((n.widgets || []).filter(w => w.label).map(w => [w.name, w.label])),
            saved_widgets_values: saved[n.id] ? saved[n.id].widgets_values : null,
            prompt_inputs: prompt[String(n.id)] ? prompt[String(n.id)].inputs : null,
            hidden_by: corners.map(([cx, cy]) => covered(cx, cy)).filter(v => v),
        };
    })};
}"""


def round_trip(wf: dict, measured: list[dict], info: dict) -> list[str]:
    """Where the frontend's saved or sent values differ from the file's (pack nodes by name; all nodes saved)."""
    problems = []
    by_id = {m["id"]: m for m in measured}
    for node in wf["nodes"]:
        if node["type"] in ("Note", "MarkdownNote") or node["id"] not in by_id:
            continue
        got, values = by_id[node["id"]], node.get("widgets_values") or []
        saved = got["saved_widgets_values"] or []
        if isinstance(values, list) and saved[:len(values)] != values:
            problems.append(f"node {node['id']} {node['type']}: saved again as {saved}, file has {values}")
        if not node["type"].startswith("Qwen3VL_") or node["type"] not in info:
            continue
        names = [name for name, _, _ in widget_inputs(info[node["type"]])]  # control values as NAME:control
        if len(names) != len(values):
            problems.append(f"node {node['id']} {node['type']}: {len(values)} values for widgets {names}")
        linked = {i["name"] for i in node.get("inputs", []) if i.get("link") is not None}
        sent = got["prompt_inputs"] or {}
        for name, value in zip(names, values, strict=False):
            if ":" in name or name in linked:
                continue
            if sent.get(name) != value:
                problems.append(f"node {node['id']} {node['type']}.{name}: sent {sent.get(name)!r}, file has {value!r}")
    return problems


def overlaps(measured: list[dict], title: float) -> list[str]:
    boxes = [(m["id"], m["pos"][0], m["pos"][1] - title, m["pos"][0] + max(m["size"][0], m["computed"][0]),
              m["pos"][1] + max(m["size"][1], m["computed"][1])) for m in measured]
    found = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            if a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]:
                found.append(f"nodes {a[0]} and {b[0]} overlap")
    return found


async def inspect(base: str, workflows: list[Path], shoot: set[str], out: Path | None) -> list[dict]:
    from playwright.async_api import async_playwright

    info = json.loads(urllib.request.urlopen(base + "/object_info", timeout=120).read())
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    report = []
    async with async_playwright() as p:
        kw = {"headless": True, "args": ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]}
        if exe:
            kw["executable_path"] = exe
        browser = await p.chromium.launch(**kw)
        try:
            page = await browser.new_page(viewport=VIEW)
            await page.goto(base + "/", wait_until="domcontentloaded", timeout=120_000)
            await page.wait_for_function("window.app && window.app.graph && window.LiteGraph", timeout=120_000)
            await page.wait_for_timeout(2500)
            for _ in range(2):  # the first visit opens the template browser
                await page.keyboard.press("Escape")
                await page.wait_for_timeout(300)
            version = await page.evaluate("window.__COMFYUI_FRONTEND_VERSION__ || ''")
            for path in workflows:
                wf = json.loads(path.read_text(encoding="utf-8"))
                got = await page.evaluate(MEASURE, wf)
                nodes = got["nodes"]
                row = {"workflow": path.name, "frontend": version, "scale": got["scale"],
                       "too_small": [f"node {m['id']} {m['type']}: {m['size']} < computed {m['computed']}"
                                     for m in nodes if m["size"][0] < m["computed"][0] - 0.5
                                     or m["size"][1] < m["computed"][1] - 0.5],
                       "overlaps": overlaps(nodes, got["title_height"]),
                       "hidden": [f"node {m['id']} {m['type']}: {m['hidden_by']}" for m in nodes if m["hidden_by"]],
                       "round_trip": round_trip(wf, nodes, info), "nodes": nodes,
                       "labels": {f"{m['id']} {m['type']}": m["labels"] for m in nodes if m["labels"]},
                       "hidden_widgets": {f"{m['id']} {m['type']}": m["hidden_widgets"] for m in nodes
                                          if m["hidden_widgets"]}}
                if out is not None and path.name in shoot:
                    out.mkdir(parents=True, exist_ok=True)
                    png = out / f"{path.stem}.png"
                    await page.screenshot(path=str(png))
                    row["screenshot"] = str(png)
                report.append(row)
        finally:
            await browser.close()
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workflows", nargs="+", type=Path)
    ap.add_argument("--base", help="a running ComfyUI with the pack, e.g. http://127.0.0.1:8188")
    ap.add_argument("--comfy-dir", help="start this ComfyUI (through the harness) instead of --base")
    ap.add_argument("--python", default=sys.executable, help="the Python that runs --comfy-dir")
    ap.add_argument("--frontend-root", help="a comfyui_frontend_package/static folder (--front-end-root)")
    ap.add_argument("--input", action="append", default=[str(ROOT / "assets" / n) for n in INPUTS],
                    help="a file for ComfyUI's input folder (default: the image and clip the workflows load)")
    ap.add_argument("--shoot", action="append", default=[], help="workflow file name to screenshot (repeatable)")
    ap.add_argument("--out", type=Path, help="folder for the screenshots")
    ap.add_argument("--sizes-out", type=Path, help="write every node's computed size here (for layout_workflows)")
    args = ap.parse_args()
    server = None
    if args.comfy_dir:
        from comfy_ws import ComfyServer

        extra = [f"--front-end-root={args.frontend_root}"] if args.frontend_root else []
        server = ComfyServer([str(ROOT)], inputs=args.input, extra_args=extra, comfy_dir=args.comfy_dir, python=args.python).start()
        args.base = server.base
    try:
        report = asyncio.run(inspect(args.base, args.workflows, set(args.shoot), args.out))
    finally:
        if server is not None:
            server.stop()
    if args.sizes_out:
        args.sizes_out.parent.mkdir(parents=True, exist_ok=True)
        rows = [{"workflow": r["workflow"], "id": n["id"], "type": n["type"], "computed": n["computed"]}
                for r in report for n in r["nodes"]]
        args.sizes_out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    summary = {key: sum(len(r[key]) for r in report) for key in ("too_small", "overlaps", "hidden", "round_trip")}
    sys.stdout.write(json.dumps({"frontend": report[0]["frontend"] if report else "", "workflows": len(report),
                                 "pack_nodes": sum(n["type"].startswith("Qwen3VL_") for r in report for n in r["nodes"]),
                                 **summary, "problems": {r["workflow"]: {k: r[k] for k in summary if r[k]}
                                                         for r in report if any(r[k] for k in summary)},
                                 "labels": {r["workflow"]: r["labels"] for r in report if r["labels"]},
                                 "hidden_widgets": {r["workflow"]: r["hidden_widgets"] for r in report
                                                    if r["hidden_widgets"]}},
                                indent=1) + "\n")
    return 1 if any(summary.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
