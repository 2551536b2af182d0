"""ComfyUI-Qwen3-VL: Qwen3-VL (dense and MoE, Instruct and Thinking) as ComfyUI nodes."""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

# web/js: loaders mark a saved model / mmproj / LoRA name this machine lacks; Task hides target where unused.
WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
