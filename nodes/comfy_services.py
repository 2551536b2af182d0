"""ComfyUI services with fallbacks, so the nodes also import and run without ComfyUI (tests, CLI).

This is the only module that imports ``folder_paths`` or ``comfy.*``.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

try:  # ComfyUI present
    import folder_paths  # type: ignore[import-not-found]
except ImportError:  # tests, CLI
    folder_paths = None

try:
    import comfy.model_management as model_management  # type: ignore[import-not-found]
    import comfy.utils as comfy_utils  # type: ignore[import-not-found]
except ImportError:
    model_management = None
    comfy_utils = None

LLM_FOLDER = "LLM"
NO_MODELS = "(no Qwen3-VL folder found in models/LLM)"

if folder_paths is not None:
    folder_paths.add_model_folder_path(LLM_FOLDER, os.path.join(folder_paths.models_dir, LLM_FOLDER))


def llm_dirs() -> list[str]:
    """Every folder registered for ``LLM`` (models/LLM and extra_model_paths.yaml entries)."""
    if folder_paths is None:
        return []
    try:
        return list(folder_paths.get_folder_paths(LLM_FOLDER))
    except KeyError:
        return []


def default_device() -> str:
    """ComfyUI's device (honours --cpu etc.) as a loader device name; 'auto' without ComfyUI."""
    if model_management is None:
        return "auto"
    kind = model_management.get_torch_device().type
    return kind if kind in ("cuda", "cpu", "mps") else "auto"


def progress_bar(total: int):
    """A ComfyUI ProgressBar bound to the running node, or None outside ComfyUI."""
    if comfy_utils is None:
        return None
    return comfy_utils.ProgressBar(total)


def check_interrupt() -> None:
    """Raise ComfyUI's own interrupt exception if the user pressed Cancel."""
    if model_management is not None:
        model_management.throw_exception_if_processing_interrupted()


def token_callback(total: int):
    """A per-decode-step hook: advances the progress bar and honours Cancel."""
    pbar = progress_bar(total)

    def on_step(new_tokens: int) -> bool:
        check_interrupt()
        if pbar is not None:
            pbar.update_absolute(min(new_tokens, total), total)
        return False

    return on_step
