"""ComfyUI node classes (thin: inputs, validation, one call into loaders/ or utils/)."""

from .generate import Qwen3VLGenerate
from .loader import Qwen3VLModelLoader

NODE_CLASS_MAPPINGS = {
    "Qwen3VL_ModelLoader": Qwen3VLModelLoader,
    "Qwen3VL_Generate": Qwen3VLGenerate,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "Qwen3VL_ModelLoader": "Qwen3-VL Model Loader",
    "Qwen3VL_Generate": "Qwen3-VL Generate",
}
