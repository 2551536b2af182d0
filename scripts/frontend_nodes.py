"""Open workflows in ComfyUI's real frontend (headless Chromium) and report how the pack's nodes look.

For every node of the pack in each workflow: its size on the canvas, the size the frontend computes for it,
its visible widgets (names), what the frontend would save for it (widgets_values, inputs); a PNG of the canvas around each node whose type matches --screenshot.

    python scripts/frontend_nodes.py --base http://127.0.0.1:PORT workflows/describe_image.json \
        --screenshot Qwen3VL_Generate --out .screens/after

Needs a running ComfyUI with the pack (e.g. the harness with --object-info-only --keep-server) and a
Python with playwright (ComfyUI's venv) plus /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
from pathlib import Path

MEASURE = """async (wf) => {
    await window.app.loadGraphData(wf, true, true, null, {showMissingNodesDialog: false,
                                                          showMissingModelsDialog: false});
    await new Promise(r => setTimeout(r, 500));
    const saved = Object.fromEntries(window.app.graph.serialize().nodes.map(n => [n.id, n]));
    return window.app.graph._nodes.filter(n => n.type.startsWith("Qwen3VL_")).map(n => ({
        id: n.id, type: n.type, pos: [...n.pos], size: [...n.size], computed: [...n.computeSize()],
        widgets: (n.widgets || []).filter(w => !w.hidden && w.type !== "hidden").map(w => w.name),
        sockets: (n.inputs || []).map(i => i.name),
        saved_widgets_values: saved[n.id].widgets_values,
        saved_inputs: (saved[n.id].inputs || []).map(i => [i.name, i.type, i.link]),
    }));
}"""

FOCUS = """(id) => {
    const node = window.app.graph.getNodeById(id);
    const canvas = window.app.canvas;
    canvas.ds.scale = 1;
    canvas.ds.offset = [-node.pos[0] + 40, -node.pos[1] + 70];
    canvas.setDirty(true, true);
    canvas.draw(true, true);
    const rect = canvas.canvas.getBoundingClientRect();
    return {x: rect.x, y: rect.y, w: node.size[0] + 80, h: node.size[1] + 110};
}"""


async def inspect(base: str, workflows: list[Path], shoot: set[str], out: Path | None) -> list[dict]:
    from playwright.async_api import async_playwright

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    report = []
    async with async_playwright() as p:
        kw = {"headless": True, "args": ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]}
        if exe:
            kw["executable_path"] = exe
        browser = await p.chromium.launch(**kw)
        try:
            page = await browser.new_page(viewport={"width": 1600, "height": 1100})
            await page.goto(base + "/", wait_until="domcontentloaded", timeout=120_000)
            await page.wait_for_function("window.app && window.app.graph && window.LiteGraph", timeout=120_000)
            await page.wait_for_timeout(2000)
            for _ in range(2):  # the first visit opens the template browser
                await page.keyboard.press("Escape")
                await page.wait_for_timeout(300)
            for path in workflows:
                nodes = await page.evaluate(MEASURE, json.loads(path.read_text(encoding="utf-8")))
                for node in nodes:
                    node["workflow"] = path.name
                    if out is not None and node["type"] in shoot:
                        box = await page.evaluate(FOCUS, node["id"])
                        await page.wait_for_timeout(300)
                        png = out / f"{path.stem}_{node['type']}_{node['id']}.png"
                        png.parent.mkdir(parents=True, exist_ok=True)
                        await page.screenshot(path=str(png), clip={"x": box["x"], "y": box["y"],
                                                                   "width": box["w"], "height": box["h"]})
                        node["screenshot"] = str(png)
                report.extend(nodes)
        finally:
            await browser.close()
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workflows", nargs="+", type=Path)
    ap.add_argument("--base", required=True, help="ComfyUI address, e.g. http://127.0.0.1:8188")
    ap.add_argument("--screenshot", action="append", default=[], help="node type to photograph (repeatable)")
    ap.add_argument("--out", type=Path, help="folder for the PNGs")
    args = ap.parse_args()
    report = asyncio.run(inspect(args.base, args.workflows, set(args.screenshot), args.out))
    sys.stdout.write(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
