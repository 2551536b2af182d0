"""Check a UI-format workflow against the registered nodes, without ComfyUI.

Node specs come from this pack's INPUT_TYPES and, for core nodes, from a saved copy of ComfyUI's
/object_info (tests/assets/core_nodes_object_info.json). ``check_workflow`` returns a list of
problems (empty = fine).
"""

from __future__ import annotations

import json
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
VIRTUAL = {"Note", "MarkdownNote", "Reroute"}  # frontend-only nodes, never sent to the server
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
# Combos whose options depend on the user's machine (files in input/ or models/LLM).
DYNAMIC_COMBOS = {("LoadImage", "image"), ("LoadVideo", "file"), ("Qwen3VL_ModelLoader", "model"),
                  ("Qwen3VL_LoraLoader", "lora"), ("CheckpointLoaderSimple", "ckpt_name"),
                  ("Qwen3VL_GGUFModel", "model"), ("Qwen3VL_GGUFModel", "mmproj")}
FRONTEND_EXTRA_WIDGETS = {"PreviewAny": 1}  # the frontend's read-only preview box may be saved


def core_specs() -> dict:
    return json.loads((ASSETS / "core_nodes_object_info.json").read_text(encoding="utf-8"))


def pack_specs(mappings: dict) -> dict:
    """/object_info-like specs for this pack's classic node classes."""
    specs = {}
    for node_id, cls in mappings.items():
        inputs = cls.INPUT_TYPES()
        specs[node_id] = {
            "input": {k: v for k, v in inputs.items() if k in ("required", "optional")},
            "input_order": {k: list(v) for k, v in inputs.items() if k in ("required", "optional")},
            "output": list(cls.RETURN_TYPES),
            "output_name": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)),
        }
    return specs


def _type_and_opts(spec_entry):
    typ = spec_entry[0]
    opts = spec_entry[1] if len(spec_entry) > 1 else {}
    if isinstance(typ, list):
        return "COMBO", {**opts, "options": typ}
    return typ, opts


def widget_inputs(spec: dict) -> list[tuple[str, str, dict]]:
    """Widgets in the order the frontend saves their values (control values included)."""
    out = []
    for section in ("required", "optional"):
        for name in spec.get("input_order", {}).get(section, spec["input"].get(section, {}).keys()):
            typ, opts = _type_and_opts(spec["input"][section][name])
            if typ not in WIDGET_TYPES or opts.get("forceInput"):
                continue
            out.append((name, typ, opts))
            if (typ == "INT" and name in ("seed", "noise_seed")) or opts.get("control_after_generate"):
                out.append((f"{name}:control", "CONTROL", {}))
            if opts.get("image_upload") or opts.get("video_upload"):
                out.append((f"{name}:upload", "UPLOAD", {}))
    return out


# Widgets appended to released nodes (optional, with a default): workflows saved before may lack their values; the
# frontend assigns saved values by position and leaves these at their default. ``thinking``: issue 18.
APPENDED_LATER = ("thinking",)


def _appended_later(spec: dict, widgets: list[tuple[str, str, dict]]) -> int:
    """How many trailing widgets (of :data:`APPENDED_LATER`) a workflow saved before they existed may lack."""
    optional = spec["input"].get("optional", {})
    count = 0
    for name, _, opts in reversed(widgets):
        if name not in APPENDED_LATER or name not in optional or "default" not in opts:
            break
        count += 1
    return count


def socket_types(spec: dict) -> dict[str, str]:
    types = {}
    for section in ("required", "optional"):
        for name, entry in spec["input"].get(section, {}).items():
            types[name] = _type_and_opts(entry)[0]
    return types


def types_match(a: str, b: str) -> bool:
    if "*" in (a, b):
        return True
    return bool(set(a.split(",")) & set(b.split(",")))


def _check_value(node_type, name, typ, opts, value) -> str | None:
    if typ == "CONTROL":
        return None if value in CONTROL_VALUES else f"control value {value!r} not in {sorted(CONTROL_VALUES)}"
    if typ == "UPLOAD":
        return None
    if typ == "COMBO":
        if (node_type, name) in DYNAMIC_COMBOS:
            return None if isinstance(value, str) and value else f"{value!r} is not a file/folder name"
        options = opts.get("options", [])
        return None if value in options else f"{value!r} not in {options}"
    if typ == "BOOLEAN":
        return None if isinstance(value, bool) else f"{value!r} is not a boolean"
    if typ == "STRING":
        return None if isinstance(value, str) else f"{value!r} is not a string"
    if typ in ("INT", "FLOAT"):
        ok_type = isinstance(value, int) if typ == "INT" else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type:
            return f"{value!r} is not {typ}"
        if "min" in opts and value < opts["min"]:
            return f"{value} < min {opts['min']}"
        if "max" in opts and value > opts["max"]:
            return f"{value} > max {opts['max']}"
    return None


def check_workflow(wf: dict, specs: dict) -> list[str]:
    problems: list[str] = []
    if not isinstance(wf.get("nodes"), list) or not isinstance(wf.get("links"), list):
        return ["not a UI-format workflow (needs 'nodes' and 'links')"]
    nodes = {n["id"]: n for n in wf["nodes"]}
    link_ids = {lk[0] for lk in wf["links"]}
    if not any(n["type"] in ("Note", "MarkdownNote") for n in wf["nodes"]):
        problems.append("no Note node telling the user which model folder to use")
    for node in wf["nodes"]:
        where = f"node {node['id']} ({node['type']})"
        if node["type"] in VIRTUAL:
            continue
        spec = specs.get(node["type"])
        if spec is None:
            problems.append(f"{where}: unknown node type")
            continue
        widgets = widget_inputs(spec)
        values = node.get("widgets_values", [])
        if isinstance(values, dict):
            problems.append(f"{where}: dict widgets_values are not checked here")
            continue
        extra = FRONTEND_EXTRA_WIDGETS.get(node["type"], 0)
        if not len(widgets) - _appended_later(spec, widgets) <= len(values) <= len(widgets) + extra:
            problems.append(f"{where}: {len(values)} widget values for {len(widgets)} widgets "
                            f"{[w[0] for w in widgets]}")
        for (name, typ, opts), value in zip(widgets, values, strict=False):
            err = _check_value(node["type"], name, typ, opts, value)
            if err:
                problems.append(f"{where}: widget {name}: {err}")
        sockets = socket_types(spec)
        linked = {i["name"] for i in node.get("inputs", []) if i.get("link") in link_ids}
        for inp in node.get("inputs", []):
            if inp.get("link") is not None and inp["link"] not in link_ids:
                problems.append(f"{where}: input {inp['name']!r} points to missing link {inp['link']}")
        widget_names = {w[0] for w in widgets}
        for name in spec["input"].get("required", {}):
            if name not in widget_names and name not in linked:
                problems.append(f"{where}: required input {name!r} is not connected")
        for inp in node.get("inputs", []):
            if inp["name"] not in sockets:
                problems.append(f"{where}: input {inp['name']!r} does not exist")
    for link in wf["links"]:
        lid, src, src_slot, dst, dst_slot, ltype = link[:6]
        if src not in nodes or dst not in nodes:
            problems.append(f"link {lid}: connects a missing node")
            continue
        s_node, d_node = nodes[src], nodes[dst]
        if s_node["type"] in VIRTUAL or d_node["type"] in VIRTUAL:
            continue
        s_spec, d_spec = specs.get(s_node["type"]), specs.get(d_node["type"])
        if s_spec is None or d_spec is None:
            continue
        if src_slot >= len(s_spec["output"]):
            problems.append(f"link {lid}: {s_node['type']} has no output {src_slot}")
            continue
        out_type = s_spec["output"][src_slot]
        inputs = d_node.get("inputs", [])
        if dst_slot >= len(inputs) or inputs[dst_slot].get("link") != lid:
            problems.append(f"link {lid}: target slot {dst_slot} of node {dst} does not point back to it")
            continue
        in_name = inputs[dst_slot]["name"]
        in_type = socket_types(d_spec).get(in_name)
        if in_type is None or not types_match(out_type, in_type) or not types_match(out_type, ltype):
            problems.append(f"link {lid}: {s_node['type']} output {out_type} -> {d_node['type']}.{in_name} "
                            f"({in_type}) does not match")
        outs = s_node.get("outputs", [])
        if src_slot >= len(outs) or lid not in (outs[src_slot].get("links") or []):
            problems.append(f"link {lid}: source output {src_slot} of node {src} does not list it")
    return problems
