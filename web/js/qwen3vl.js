// Qwen3-VL pack: mark a loader's model / mmproj / LoRA name that this machine's list lacks (see qwen3vl_lists.js).
import { app } from "../../../scripts/app.js";
import { LISTS, markMissing } from "./qwen3vl_lists.js";

function refresh(node) {
  if (markMissing(node)) node.setDirtyCanvas?.(true, true);
}

app.registerExtension({
  name: "qwen3vl.missingNames",
  beforeRegisterNodeDef(nodeType, nodeData) {
    if (!LISTS[nodeData.name]) return;
    // Drawn every frame the node is on screen: cheap, and follows a new pick, a path typed in and a refreshed list (R).
    const draw = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (...args) {
      markMissing(this);
      return draw?.apply(this, args);
    };
  },
  nodeCreated(node) {
    if (LISTS[node.comfyClass || node.type]) refresh(node);
  },
  loadedGraphNode(node) {
    if (LISTS[node.comfyClass || node.type]) refresh(node);
  },
});
