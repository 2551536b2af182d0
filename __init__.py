"""ComfyUI-Qwen3-VL: Qwen3-VL (dense and MoE, Instruct and Thinking) as ComfyUI nodes."""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

# web/js: the loaders say when a saved model / mmproj / LoRA name is not in this machine's list.
WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
