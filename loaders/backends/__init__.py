"""Engines behind one seam: :func:`backend_for` turns whatever a loader node produced into a :class:`Backend`.

- ``local``: transformers in this process, on a model from the MODEL_CACHE (:class:`~..cache.ModelBundle`);
- ``served``: an OpenAI-compatible server such as vLLM (:class:`~.served.ServerBundle`).
"""

from __future__ import annotations

from ...utils.errors import InputError
from ..cache import ModelBundle
from .base import NO_HOOKS, Backend, Hooks, VisualBudget, check_budget, pixel_bounds
from .local import LocalBackend
from .served import ServedBackend, ServerBundle

__all__ = ["NO_HOOKS", "Backend", "Hooks", "VisualBudget", "backend_for", "check_budget", "pixel_bounds"]


def backend_for(bundle, input_name: str = "model") -> Backend:
    """The engine for a ``QWEN3VL_MODEL`` value (from Qwen3-VL Model Loader or Qwen3-VL Server Model)."""
    if isinstance(bundle, ModelBundle):
        return LocalBackend(bundle)
    if isinstance(bundle, ServerBundle):
        return ServedBackend(bundle)
    raise InputError(input_name, f"is not a Qwen3-VL model (got {type(bundle).__name__}).",
                     "Connect Qwen3-VL Model Loader or Qwen3-VL Server Model.")
