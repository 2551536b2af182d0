"""The one global model cache: load a Qwen3-VL / Qwen3.5 once, hand the same objects to every node.

Keys hold everything that changes the loaded weights (folder, family, dtype, attention,
quantization, device). LoRA adapters are not in the key: a bundle names them and ``loaders.lora`` adds them
to the shared model only while that bundle generates. A :class:`ModelBundle` carries the key and the settings; its ``model`` and
``processor`` are looked up in the cache when used, so ``unload`` really frees the weights even
while ComfyUI still holds the bundle in its output cache (the next use reloads them).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..utils.errors import ModelLoadError
from . import options as opt
from .families import family as family_row
from .resolve import (
    check_tokenizer_files,
    check_vision_weights,
    check_weights,
    read_family,
    read_own_quantization,
    resolve_model_path,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheKey:
    path: str
    family: str
    dtype: str
    attention: str
    quantization: str
    device: str
    trust_remote_code: bool = False


@dataclass
class _Entry:
    model: object
    processor: object
    bundle: ModelBundle
    kept: bool = False  # some loader asked to keep this model loaded: runs of others do not free it
    attached: dict = field(default_factory=dict)  # what lives and dies with this model (LoRA adapters matched to it)


@dataclass(frozen=True)
class ModelBundle:
    """What travels between nodes (ComfyUI type ``QWEN3VL_MODEL``)."""

    key: CacheKey
    keep_loaded: bool = field(default=True, compare=False)
    # LoRA adapters (loaders.lora.AdapterRef: folder, strength, file fingerprint) applied while this bundle
    # generates. They are part of the bundle's identity but not of the cache key: the base weights are shared.
    adapters: tuple = ()

    family = property(lambda self: self.key.family)
    dtype = property(lambda self: self.key.dtype)
    device = property(lambda self: self.key.device)
    attention = property(lambda self: self.key.attention)
    quantization = property(lambda self: self.key.quantization)
    path = property(lambda self: self.key.path)

    @property
    def model(self):
        return _acquire(self.key, self.keep_loaded).model

    @property
    def processor(self):
        return _acquire(self.key, self.keep_loaded).processor

    @property
    def loaded(self) -> bool:
        return _is_cached(self.key)


MODEL_CACHE: dict[CacheKey, _Entry] = {}
_LOCK = threading.RLock()
_LOAD_HOOKS: list[Callable[[CacheKey, int], None]] = []
_UNLOAD_HOOKS: list[Callable[[], int]] = []


def make_key(model: str, search_dirs: list[str] | None = None, dtype: str = "auto", attention: str = "auto",
             quantization: str = "none", device: str = "auto", input_name: str = "model",
             trust_remote_code: bool = False) -> CacheKey:
    """Check the folder and the options, and return the cache key they resolve to (no weights read)."""
    path = resolve_model_path(model, list(search_dirs or []), input_name)
    family = read_family(path, input_name)
    check_weights(path, input_name)
    check_vision_weights(path, input_name)
    check_tokenizer_files(path, input_name)
    device = opt.resolve_device(device)
    dtype = opt.resolve_dtype(dtype, device)
    attention = opt.resolve_attention(attention, device, dtype)
    opt.check_quantization(quantization, family, read_own_quantization(path))
    opt.quantization_config(quantization, dtype)  # raises early if bitsandbytes is missing
    return CacheKey(str(path), family, dtype, attention, quantization, device, bool(trust_remote_code))


def load_model(model: str, search_dirs: list[str] | None = None, dtype: str = "auto", attention: str = "auto",
               quantization: str = "none", device: str = "auto", keep_loaded: bool = True,
               input_name: str = "model", trust_remote_code: bool = False) -> ModelBundle:
    """Load (or take from the cache) a Qwen3-VL / Qwen3.5 model and its processor.

    A cache hit returns the same objects without reading the weights again (the folder's
    config.json is still read to resolve the key).
    """
    key = make_key(model, search_dirs, dtype, attention, quantization, device, input_name, trust_remote_code)
    entry = _acquire(key, keep_loaded, input_name)
    if entry.bundle.keep_loaded == keep_loaded:
        return entry.bundle
    return ModelBundle(key, keep_loaded)


def add_load_hook(hook: Callable[[CacheKey, int], None]) -> None:
    """Run ``hook(key, weight_bytes)`` before every load from disk, reloads included (ComfyUI uses it to
    free VRAM held by its own models). Adding the same hook twice has no effect."""
    with _LOCK:
        if hook not in _LOAD_HOOKS:
            _LOAD_HOOKS.append(hook)


def add_unload_hook(hook: Callable[[], int]) -> None:
    """Run ``hook()`` in :func:`unload_all` (Unload Models, ComfyUI's /free): other things this pack holds, such
    as managed llama-servers, are freed with the models. It returns how many it freed."""
    with _LOCK:
        if hook not in _UNLOAD_HOOKS:
            _UNLOAD_HOOKS.append(hook)


def remove_load_hook(hook: Callable[[CacheKey, int], None]) -> None:
    with _LOCK:
        if hook in _LOAD_HOOKS:
            _LOAD_HOOKS.remove(hook)


def release_after_run(bundle: ModelBundle) -> None:
    """After a run: free the model if its loader said keep_loaded off and no other loader keeps it."""
    if bundle.keep_loaded:
        return
    with _LOCK:
        entry = MODEL_CACHE.get(bundle.key)
        if entry is None or entry.kept:
            return
    unload(bundle.key)


def attached(bundle: ModelBundle) -> dict:
    """Storage that lives as long as ``bundle``'s model stays in the cache (loading it if needed) and is freed with
    it by :func:`unload`: ``loaders.lora`` keeps the adapters it has matched to the model there."""
    return _acquire(bundle.key, bundle.keep_loaded).attached


def _is_cached(key: CacheKey) -> bool:
    with _LOCK:
        return key in MODEL_CACHE


def weight_bytes(path: str) -> int:
    """Size of the safetensors weights of a model folder, in bytes (broken links count 0)."""
    total = 0
    for p in Path(path).glob("*.safetensors"):
        try:
            total += p.stat().st_size
        except OSError:  # check_weights has refused broken links; this only sizes a memory request
            continue
    return total


def _acquire(key: CacheKey, keep_loaded: bool = True, input_name: str = "model") -> _Entry:
    with _LOCK:
        entry = MODEL_CACHE.get(key)
        if entry is not None:
            logger.debug("model cache hit: %s", key)
        else:
            logger.debug("model cache miss: %s", key)
            size = weight_bytes(key.path)
            for hook in list(_LOAD_HOOKS):
                hook(key, size)
            model, processor = _load_from_disk(key, input_name)
            entry = _Entry(model, processor, ModelBundle(key, keep_loaded))
            MODEL_CACHE[key] = entry
        entry.kept = entry.kept or keep_loaded
        return entry


def _load_from_disk(key: CacheKey, input_name: str = "model"):
    import transformers
    from safetensors import SafetensorError
    from transformers import AutoProcessor

    from .compat import dtype_kwarg

    start = time.perf_counter()
    row = family_row(key.family)
    cls = getattr(transformers, row.class_name)
    if row.hybrid and key.device in ("cuda", "auto"):
        log_missing_kernels_once()
    if key.trust_remote_code:
        logger.warning("trust_remote_code is ON for %s: Python files in that folder may run. Qwen3-VL does not "
                       "need it; turn it off unless you trust the folder's author.", key.path)
    kwargs = dict(attn_implementation=key.attention, use_safetensors=True, trust_remote_code=key.trust_remote_code,
                  local_files_only=True, **dtype_kwarg(opt.torch_dtype(key.dtype)))
    quant = opt.quantization_config(key.quantization, key.dtype)
    if quant is not None:
        kwargs["quantization_config"] = quant
    kwargs["device_map"] = "auto" if key.device == "auto" else {"": key.device}
    try:
        processor = AutoProcessor.from_pretrained(key.path, local_files_only=True,
                                                  trust_remote_code=key.trust_remote_code)
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise ModelLoadError(input_name, f"the processor/tokenizer files in {key.path!r} cannot be loaded ({err}).",
                             "A Qwen3-VL folder needs tokenizer.json (or vocab.json + merges.txt), "
                             "tokenizer_config.json and preprocessor_config.json/processor_config.json; "
                             "re-download the missing files.") from err
    check_chat_template(processor, key.path, input_name)
    try:
        model, info = cls.from_pretrained(key.path, output_loading_info=True, **kwargs)
    except (OSError, ValueError, SafetensorError) as err:
        raise ModelLoadError(input_name, f"the weights in {key.path!r} cannot be loaded ({err}).",
                             "Re-download the model, or try another dtype/quantization.") from err
    except ImportError as err:  # e.g. a GPTQ/AWQ folder whose quantization package is not installed
        raise ModelLoadError(input_name, f"loading {key.path!r} needs a package that is not installed ({err}).",
                             "Install it with ComfyUI's own Python (pip install ...), or choose another "
                             "model folder.") from err
    except RuntimeError as err:  # transformers: "size mismatch" / ignore_mismatched_sizes
        if "mismatch" not in str(err):
            raise
        raise ModelLoadError(input_name, f"config.json in {key.path!r} does not match its weights: some weight "
                             f"shapes differ ({str(err).splitlines()[0][:200]}).", MISMATCH_ADVICE) from err
    problems = loading_problems(info, model)
    if problems:
        del model
        free_memory()
        raise ModelLoadError(input_name, f"config.json in {key.path!r} does not match its weights: "
                             + "; ".join(problems) + ".", MISMATCH_ADVICE)
    model = model.eval()
    _check_vision_tokens(model, processor, key.path, input_name)
    logger.info("loaded %s from %s (%s, %s, %s, %s) in %.2f s", cls.__name__, Path(key.path).name,
                key.dtype, key.attention, key.quantization, key.device, time.perf_counter() - start)
    return model, processor


_KERNELS_REPORTED: list[bool] = []


def log_missing_kernels_once() -> None:
    """Qwen3.5's linear-attention layers are fast on CUDA only with flash-linear-attention and causal-conv1d;
    without them transformers runs a slow torch path. Said once per process (when a hybrid model loads on CUDA)."""
    import importlib.util

    if _KERNELS_REPORTED:
        return
    _KERNELS_REPORTED.append(True)
    missing = [pip for mod, pip in (("fla", "flash-linear-attention"), ("causal_conv1d", "causal-conv1d"))
               if importlib.util.find_spec(mod) is None]
    if missing:
        logger.warning("Qwen3.5 on CUDA: %s not installed, so its linear-attention layers run on the slow torch "
                       "path. For full speed: pip install %s (with ComfyUI's own Python).", " and ".join(missing),
                       " ".join(missing))


MISMATCH_ADVICE = ("The folder mixes files of different models (e.g. a MoE config.json over dense weights): "
                   "re-download the whole model folder. Nothing was loaded with random weights.")


def check_chat_template(processor, path: str, input_name: str = "model") -> None:
    """Refuse a folder without a chat template: without one every prompt would be rendered wrongly or fail."""
    template = getattr(processor, "chat_template", None) or getattr(processor.tokenizer, "chat_template", None)
    if not template:
        raise ModelLoadError(input_name, f"{path!r} has no chat template (no chat_template.jinja or "
                             "chat_template.json, and none in tokenizer_config.json).",
                             "Copy chat_template.jinja (or chat_template.json) of the same Qwen3-VL model into "
                             "the folder, or re-download it.")


def loading_problems(info: dict, model) -> list[str]:
    """What ``from_pretrained(output_loading_info=True)`` found wrong: weights that do not fill the model that
    config.json describes. Missing or wrongly shaped weights always count (the model would run on random
    weights); weights the model has no place for count too, except in pre-quantized folders (their quantizer
    may keep scales the plain model lacks), where they are only logged."""
    missing = sorted(info.get("missing_keys") or ())
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys") or ())
    unexpected = sorted(info.get("unexpected_keys") or ())
    errors = [str(e) for e in info.get("error_msgs") or ()]
    if unexpected and getattr(model.config, "quantization_config", None) is not None and not (missing or mismatched):
        logger.warning("%d weight(s) the model does not use (pre-quantized folder), e.g. %s", len(unexpected),
                       ", ".join(unexpected[:3]))
        unexpected = []
    return [f"{len(v)} {label} (e.g. {', '.join(v[:3])})" for label, v in
            (("missing weight(s)", missing), ("weight(s) of the wrong shape", mismatched),
             ("unexpected weight(s)", unexpected), ("load error(s)", errors)) if v]


def _check_vision_tokens(model, processor, path: str, input_name: str = "model") -> None:
    """The tokenizer's vision tokens must be the ids the model was trained with."""
    tok = processor.tokenizer
    for attr, token in (("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>")):
        expected = getattr(model.config, attr, None)
        found = tok.convert_tokens_to_ids(token)
        if expected is not None and found != expected:
            raise ModelLoadError(input_name, f"the tokenizer in {path!r} maps {token} to {found}, but config.json "
                                 f"says {attr} = {expected}: tokenizer and weights do not belong together.",
                                 "Use the tokenizer files that came with this model.")


def unload(key: CacheKey) -> bool:
    """Drop one model from the cache and free its memory. Returns whether it was loaded."""
    with _LOCK:
        entry = MODEL_CACHE.pop(key, None)
    if entry is None:
        return False
    del entry
    free_memory()
    logger.info("unloaded %s", Path(key.path).name)
    return True


def unload_all() -> int:
    """Drop every cached model and free memory. Returns how many were dropped."""
    with _LOCK:
        count = len(MODEL_CACHE)
        MODEL_CACHE.clear()
        hooks = list(_UNLOAD_HOOKS)
    count += sum(hook() for hook in hooks)
    free_memory()
    if count:
        logger.info("unloaded %d Qwen3-VL model(s)", count)
    return count


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        mps.empty_cache()
