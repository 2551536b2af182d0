"""ComfyUI node classes (thin: inputs, validation, one call into loaders/ or utils/).

Node ids (``Qwen3VL_*``) are a public contract and never change; the display names of the nodes that run a model
say "Qwen3-VL / Qwen3.5" since they run both families (loaders/families.py)."""

from .caption import Qwen3VLBatchCaption, Qwen3VLLoadImageFolder, Qwen3VLSaveCaptions
from .download import Qwen3VLDownloadModel
from .generate import Qwen3VLGenerate
from .gguf import Qwen3VLGGUFModel
from .grounding import Qwen3VLGrounding, Qwen3VLParseGrounding
from .images import Qwen3VLImageBatch
from .interop import Qwen3VLBBoxToBoundingBox
from .loader import Qwen3VLModelLoader
from .lora import Qwen3VLLoraLoader
from .memory import Qwen3VLUnload
from .option_nodes import Qwen3VLSampling, Qwen3VLVideoOptions
from .run_task import Qwen3VLRunTask, Qwen3VLTaskOptions
from .server import Qwen3VLServerModel
from .task import Qwen3VLParseTask, Qwen3VLTask

NODE_CLASS_MAPPINGS = {
    "Qwen3VL_ModelLoader": Qwen3VLModelLoader,
    "Qwen3VL_ServerModel": Qwen3VLServerModel,
    "Qwen3VL_LoraLoader": Qwen3VLLoraLoader,
    "Qwen3VL_GGUFModel": Qwen3VLGGUFModel,
    "Qwen3VL_Generate": Qwen3VLGenerate,
    "Qwen3VL_Sampling": Qwen3VLSampling,
    "Qwen3VL_VideoOptions": Qwen3VLVideoOptions,
    "Qwen3VL_Grounding": Qwen3VLGrounding,
    "Qwen3VL_ParseGrounding": Qwen3VLParseGrounding,
    "Qwen3VL_BBoxToBoundingBox": Qwen3VLBBoxToBoundingBox,
    "Qwen3VL_ImageBatch": Qwen3VLImageBatch,
    "Qwen3VL_RunTask": Qwen3VLRunTask,
    "Qwen3VL_TaskOptions": Qwen3VLTaskOptions,
    "Qwen3VL_Task": Qwen3VLTask,
    "Qwen3VL_ParseTask": Qwen3VLParseTask,
    "Qwen3VL_Unload": Qwen3VLUnload,
    "Qwen3VL_DownloadModel": Qwen3VLDownloadModel,
    "Qwen3VL_BatchCaption": Qwen3VLBatchCaption,
    "Qwen3VL_LoadImageFolder": Qwen3VLLoadImageFolder,
    "Qwen3VL_SaveCaptions": Qwen3VLSaveCaptions,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "Qwen3VL_ModelLoader": "Qwen3-VL / Qwen3.5 Model Loader",
    "Qwen3VL_ServerModel": "Qwen3-VL / Qwen3.5 Server Model",
    "Qwen3VL_GGUFModel": "Qwen3-VL / Qwen3.5 GGUF (llama.cpp)",
    "Qwen3VL_LoraLoader": "Qwen3-VL / Qwen3.5 LoRA Loader",
    "Qwen3VL_Generate": "Qwen3-VL / Qwen3.5 Generate",
    "Qwen3VL_Sampling": "Qwen3-VL Sampling",
    "Qwen3VL_VideoOptions": "Qwen3-VL Video Options",
    "Qwen3VL_Grounding": "Qwen3-VL / Qwen3.5 Grounding",
    "Qwen3VL_ParseGrounding": "Qwen3-VL Parse Grounding",
    "Qwen3VL_BBoxToBoundingBox": "Qwen3-VL BBOX to Bounding Box",
    "Qwen3VL_ImageBatch": "Qwen3-VL Batch Images",
    "Qwen3VL_RunTask": "Qwen3-VL / Qwen3.5 Task",
    "Qwen3VL_TaskOptions": "Qwen3-VL Task Options",
    "Qwen3VL_Task": "Qwen3-VL / Qwen3.5 Task (old layout)",
    "Qwen3VL_ParseTask": "Qwen3-VL Parse Task",
    "Qwen3VL_Unload": "Qwen3-VL Unload Models",
    "Qwen3VL_DownloadModel": "Qwen3-VL / Qwen3.5 Download Model",
    "Qwen3VL_BatchCaption": "Qwen3-VL / Qwen3.5 Batch Caption",
    "Qwen3VL_LoadImageFolder": "Qwen3-VL Load Image Folder",
    "Qwen3VL_SaveCaptions": "Qwen3-VL Save Captions",
}
