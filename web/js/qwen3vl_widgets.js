// What the pack's nodes show beyond ComfyUI's defaults. No imports: the pack's tests run it in Node.
//
// 1. A loader's saved name that this machine's list lacks. A workflow from another machine keeps its model, mmproj
// or LoRA name (the loaders accept any name so that a *_path input can replace it), and the frontend shows a saved
// value even when the list does not hold it: a loader whose only option is "(no Qwen3-VL folder found in
// models/LLM)" still read "Qwen3-VL-2B-Instruct". The widget's label now says so ("missing model": the word that
// matters first, since a frontend cuts a long label short to show a long value); the value itself is never changed
// (saved workflows keep it).

// node type -> [list input, the path input that replaces it when set, where the list comes from]
export const LISTS = {
  Qwen3VL_ModelLoader: [["model", "model_path", "models/LLM"]],
  Qwen3VL_GGUFModel: [["model", "model_path", "models/LLM"], ["mmproj", "mmproj_path", "models/LLM"]],
  Qwen3VL_LoraLoader: [["lora", "lora_path", "models/loras or models/LLM"]],
};

export const MARK = "missing ";
const ORIGINAL = "qwen3vlLabel"; // the label a widget had before it was marked

function widgetNamed(node, name) {
  return (node.widgets || []).find((w) => w.name === name);
}

function listValues(widget) {
  const values = widget.options && widget.options.values;
  const list = typeof values === "function" ? values(widget) : values;
  return Array.isArray(list) ? list : null;
}

// The list inputs of this node whose value is neither in the list nor replaced by a path: [{input, value, where}].
export function missingNames(node) {
  const rules = LISTS[node.comfyClass || node.type] || [];
  const found = [];
  for (const [input, pathInput, where] of rules) {
    const widget = widgetNamed(node, input);
    const list = widget ? listValues(widget) : null;
    if (!list || typeof widget.value !== "string") continue;
    const path = widgetNamed(node, pathInput);
    if (path && typeof path.value === "string" && path.value.trim()) continue;
    if (!list.includes(widget.value)) found.push({ input, value: widget.value, where });
  }
  return found;
}

// Label each list widget of the node: "missing model" while its name is missing, its own label (a
// user's rename included) otherwise. Returns whether a label changed (the caller redraws).
export function markMissing(node) {
  const rules = LISTS[node.comfyClass || node.type];
  if (!rules) return false;
  const missing = new Set(missingNames(node).map((m) => m.input));
  let changed = false;
  for (const [input] of rules) {
    const widget = widgetNamed(node, input);
    if (!widget) continue;
    const marked = MARK + input;
    if (missing.has(input) && widget.label !== marked) {
      if (!(ORIGINAL in widget)) widget[ORIGINAL] = widget.label;
      widget.label = marked; // some frontends make label an accessor: assign, never delete
      changed = true;
    } else if (!missing.has(input) && widget.label === marked) {
      widget.label = widget[ORIGINAL];
      changed = true;
    }
  }
  return changed;
}

// 2. Qwen3-VL Task shows target only for the tasks whose prompt reads it (utils/task_prompts.py, reads_target). The
// hidden widget keeps its value: it is saved and sent as before, and comes back when such a task is picked.
export const TASK_WIDGETS = { Qwen3VL_RunTask: { choice: "task", widget: "target" } };
export const READS_TARGET = ["points", "3d boxes", "image prompt", "gui click"];
const SIZE = "qwen3vlComputeSize"; // a hidden widget's own computeSize, put back when it shows again

// Hide or show the node's target for its task. Returns whether it changed; a node grows (never shrinks) to fit a
// widget shown again, so nothing it shows is cut off.
export function showTaskWidgets(node) {
  const rule = TASK_WIDGETS[node.comfyClass || node.type];
  if (!rule) return false;
  const choice = widgetNamed(node, rule.choice);
  const widget = widgetNamed(node, rule.widget);
  if (!choice || !widget) return false;
  const hide = !READS_TARGET.includes(choice.value);
  if (Boolean(widget.hidden) === hide) return false;
  widget.hidden = hide;
  // Frontends before 1.4x keep a hidden widget's row; a widget that says it is -4 px tall gives it back there.
  if (hide) {
    if (!(SIZE in widget)) widget[SIZE] = widget.computeSize;
    widget.computeSize = () => [0, -4];
  } else if (SIZE in widget) {
    if (widget[SIZE]) widget.computeSize = widget[SIZE];
    else delete widget.computeSize;
    delete widget[SIZE];
  }
  if (!hide && typeof node.computeSize === "function" && Array.isArray(node.size)) {
    const needed = node.computeSize();
    if (needed[1] > node.size[1]) node.setSize?.([node.size[0], needed[1]]);
  }
  return true;
}
