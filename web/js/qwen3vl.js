// Qwen3-VL pack: mark a loader's model / mmproj / LoRA name that this machine's list lacks, and show Task's target
// only for the tasks that read it (see qwen3vl_widgets.js).
import { app } from "../../../scripts/app.js";
import { LISTS, TASK_WIDGETS, markMissing, showTaskWidgets } from "./qwen3vl_widgets.js";

const ours = (type) => Boolean(LISTS[type] || TASK_WIDGETS[type]);

function update(node) {
  return markMissing(node) | showTaskWidgets(node);
}

function refresh(node) {
  if (update(node)) node.setDirtyCanvas?.(true, true);
}

// Widgets whose change may change a mark or what Task shows: their callbacks refresh the node at once (the Vue node
// view of newer frontends does not draw nodes on the canvas, so onDrawForeground alone would miss it there).
function watch(node) {
  const names = new Set([...(LISTS[node.comfyClass || node.type] || []).flatMap(([list, path]) => [list, path]),
                         TASK_WIDGETS[node.comfyClass || node.type]?.choice].filter(Boolean));
  for (const widget of node.widgets || []) {
    if (!names.has(widget.name)) continue;
    const callback = widget.callback;
    widget.callback = function (...args) {
      const result = callback?.apply(this, args);
      refresh(node);
      return result;
    };
  }
}

app.registerExtension({
  name: "qwen3vl.widgets",
  beforeRegisterNodeDef(nodeType, nodeData) {
    if (!ours(nodeData.name)) return;
    // Drawn every frame the node is on screen: cheap, and follows a new pick, a path typed in and a refreshed list (R).
    const draw = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (...args) {
      if (update(this)) this.setDirtyCanvas?.(true, true);
      return draw?.apply(this, args);
    };
  },
  nodeCreated(node) {
    if (!ours(node.comfyClass || node.type)) return;
    watch(node);
    refresh(node);
  },
  loadedGraphNode(node) {
    if (ours(node.comfyClass || node.type)) refresh(node);
  },
});
