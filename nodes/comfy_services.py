"""ComfyUI services with fallbacks, so the nodes also import and run without ComfyUI (tests, CLI).

This is the only module that imports ``folder_paths``, ``comfy.*``, ``comfy_execution`` or ComfyUI's ``server``.
"""

from __future__ import annotations

import logging
import os

from ..loaders.cache import add_load_hook, unload_all
from ..utils.feedback import UPDATE_INTERVAL, Throttle, live_text

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

try:  # ComfyUI's web server (its own top-level module ``server``, not this pack's nodes/server.py)
    from server import PromptServer  # type: ignore[import-not-found]
except ImportError:
    PromptServer = None

try:
    from comfy_execution.utils import get_executing_context  # type: ignore[import-not-found]
except ImportError:
    get_executing_context = None

LLM_FOLDER = "LLM"
NO_MODELS = "(no Qwen3-VL folder found in models/LLM)"

if folder_paths is not None:
    folder_paths.add_model_folder_path(LLM_FOLDER, os.path.join(folder_paths.models_dir, LLM_FOLDER))


def _hook_unload_all_models() -> None:
    """Make ComfyUI's "Unload Models" buttons (POST /free) also empty this pack's MODEL_CACHE.

    ComfyUI 0.3.x has no registration hook for custom caches. Its /free handler calls
    ``comfy.model_management.unload_all_models()`` by attribute lookup at call time, so wrapping
    that one function reaches both buttons without touching anything else. (Handing the model to
    ComfyUI's ModelPatcher would also work but would let ComfyUI move parts of a bitsandbytes or
    multi-GPU model between devices, which those layouts do not survive.)
    """
    original = getattr(model_management, "unload_all_models", None)
    if original is None or getattr(original, "_qwen3vl_hooked", False):
        return

    def unload_all_models(*args, **kwargs):
        dropped = unload_all()
        logger.info("ComfyUI unload: freed %d Qwen3-VL model(s) from the pack cache", dropped)
        return original(*args, **kwargs)

    unload_all_models._qwen3vl_hooked = True
    unload_all_models.__wrapped__ = original
    model_management.unload_all_models = unload_all_models


def install_hooks() -> None:
    """Called by the loader node before its first load (nothing is changed at import): the /free hook
    above and a load hook that frees ComfyUI's VRAM before every load from disk, reloads included."""
    if model_management is not None:
        _hook_unload_all_models()
        add_load_hook(_free_before_load)


def _free_before_load(key, weight_bytes: int) -> None:
    free_device_memory(int(weight_bytes * 1.2), key.device)


def free_device_memory(bytes_needed: int, device: str) -> None:
    """On CUDA, ask ComfyUI to unload its own models until ``bytes_needed`` fit (before a big load)."""
    if model_management is None or device not in ("cuda", "auto"):
        return
    import torch

    if torch.cuda.is_available():
        model_management.free_memory(bytes_needed, model_management.get_torch_device())


def llm_dirs() -> list[str]:
    """Every folder registered for ``LLM`` (models/LLM and extra_model_paths.yaml entries)."""
    if folder_paths is None:
        return []
    try:
        return list(folder_paths.get_folder_paths(LLM_FOLDER))
    except KeyError:
        return []


def lora_dirs() -> list[str]:
    """Where LoRA adapter folders are looked for: every ``loras`` folder (models/loras and extra_model_paths.yaml
    entries), then every ``LLM`` folder."""
    if folder_paths is None:
        return []
    try:
        loras = list(folder_paths.get_folder_paths("loras"))
    except KeyError:
        loras = []
    return loras + [d for d in llm_dirs() if d not in loras]


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


def running_node_id() -> str | None:
    """The id of the node ComfyUI is running in this thread (as core's progress hook finds it), else None."""
    context = get_executing_context() if get_executing_context is not None else None
    if context is not None:
        return context.node_id
    server = getattr(PromptServer, "instance", None)
    return getattr(server, "last_node_id", None)


def show_text(text: str) -> None:
    """Show ``text`` on the running node (a binary TEXT event, as core nodes send); nothing outside ComfyUI."""
    server = getattr(PromptServer, "instance", None)
    node_id = running_node_id() if server is not None else None
    if node_id is None:
        return
    server.send_progress_text(text, node_id, getattr(server, "client_id", None))


class NodeFeedback:
    """A running node's progress bar and live text, both throttled; Cancel is honoured at every step.

    The bar moves at most once per ``interval`` seconds, plus its first and its last value (``finish``).
    ``on_text(thinking, answer)`` shows the text so far; the engines call it at most every 0.1 s plus once per
    answer, and this throttle (a little looser, so that it never drops their regular updates) bounds the bursts
    of final texts from many quick caption batches; ``finish`` shows the last text if it was held back.
    ``heading()`` (optional) is put above the text, e.g. which image is being captioned.
    """

    def __init__(self, total: int, heading=None, interval: float = UPDATE_INTERVAL):
        self.total = max(1, int(total))
        self.bar = progress_bar(self.total)
        self.heading = heading
        self.throttle, self.text_throttle = Throttle(interval), Throttle(interval * 0.8)
        self.value = self.shown = None
        self.text = self.text_shown = ""

    def on_step(self, new_tokens: int) -> bool:
        """The engines' per-decode-step hook: Cancel check every time, the bar only when an update is due."""
        check_interrupt()
        self.progress(min(int(new_tokens), self.total))
        return False

    def progress(self, value: int, total: int | None = None) -> None:
        if total is not None:
            self.total = max(1, int(total))
        self.value = value
        if self.bar is not None and (value >= self.total or self.throttle.due()):
            self._draw()

    def on_text(self, thinking: str, answer: str) -> None:
        if not (thinking or answer):  # nothing written yet: nothing to show
            return
        self.text = live_text(thinking, answer, self.heading() if self.heading is not None else "")
        if self.text_throttle.due():
            self._show()

    def finish(self) -> None:
        """Draw the last value and show the last text if the throttles held them back."""
        if self.bar is not None and self.value is not None and self.value != self.shown:
            self._draw()
        if self.text != self.text_shown:
            self._show()

    def _show(self) -> None:
        self.text_shown = self.text
        show_text(self.text)

    def _draw(self) -> None:
        self.shown = self.value
        self.bar.update_absolute(self.value, self.total)


def token_callback(total: int):
    """A per-decode-step hook (progress bar, throttled, and Cancel) for nodes without live text."""
    return NodeFeedback(total).on_step
