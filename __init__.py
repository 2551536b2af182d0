"""ComfyUI-Qwen3-VL: Qwen3-VL (dense and MoE, Instruct and Thinking) as ComfyUI nodes."""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
