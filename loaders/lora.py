"""LoRA adapters over a cached model: matched, checked, and applied only while their bundle generates.

A LoRA bundle is the base :class:`~.cache.ModelBundle` plus a tuple of :class:`AdapterRef` (path, strength,
file fingerprint): the base weights are read from disk once and shared; nothing of an adapter stays in the
model between runs. While a LoRA bundle generates, each target ``nn.Linear`` gets a forward hook that adds
``lora_B(lora_A(x)) * alpha / r * strength`` to its output, the arithmetic of peft's unmerged ``LoraLayer``
(adapter weights in fp32 like peft's ``autocast_adapter_dtype``); the hooks are removed afterwards, so the base
model is exactly what it was. Adapters trained on another key layout (text-only ``model.layers.N`` vs the
vision-language wrapper ``model.language_model.layers.N``, ``visual.`` vs ``model.visual.``, ``language_model.model.``,
torch.compile's ``_orig_mod.``) are remapped; anything still unmatched is refused by name, never ignored.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..utils.errors import InputError
from ..utils.safe_files import printable
from .cache import ModelBundle, attached
from .lora_files import (
    MERGE_ADVICE,
    AdapterConfig,
    check_adapter_folder,
    fingerprint,
    read_adapter_config,
    resolve_adapter_path,
)

logger = logging.getLogger(__name__)

MAX_STRENGTH = 2.0
_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$")
# Module names up to the first of these segments are the "wrapper" path (model., model.language_model., visual., ...)
_ROOTS = {"layers": "text", "embed_tokens": "text", "blocks": "vision", "merger": "vision",
          "deepstack_merger_list": "vision", "patch_embed": "vision", "lm_head": "head"}
_WRAPPERS = {"model", "language_model", "text_model", "visual", "vision_tower", "vision_model", "base_model"}
_VISION_WRAPPERS = {"visual", "vision_tower", "vision_model"}
_APPLY_LOCK = threading.RLock()  # hooks go in and out under it: no other run sees another bundle's adapter
_PREPARED_MAX = 8  # adapters kept matched per model (on its device); more are matched again when used


@dataclass(frozen=True)
class AdapterRef:
    """One adapter in a LoRA bundle (hashable; part of the bundle's identity with its strength)."""

    path: str
    strength: float
    fingerprint: tuple[int, int, int, int]
    modules: int = field(default=0, compare=False)  # modules the adapter changes (for info)

    @property
    def name(self) -> str:
        return Path(self.path).name


@dataclass
class _Prepared:
    """An adapter matched to a model: per module name, lora_A, lora_B (on the module's device) and alpha / r."""

    weights: dict[str, tuple[torch.Tensor, torch.Tensor, float]]
    changed: int
    remapped: int


def check_strength(strength, input_name: str = "strength") -> float:
    ok = isinstance(strength, (int, float)) and not isinstance(strength, bool) and math.isfinite(strength)
    if not ok or not 0.0 <= strength <= MAX_STRENGTH:
        raise InputError(input_name, f"must be a number from 0 to {MAX_STRENGTH:g}, got {strength!r}.",
                         "Use 1 for the adapter as trained, 0 to switch it off, 0.5 for half its effect.")
    return float(strength)


def with_adapter(bundle, lora: str, search_dirs: list[str] | None = None, strength: float = 1.0,
                 input_name: str = "lora") -> ModelBundle:
    """``bundle`` plus the adapter folder ``lora`` at ``strength``: checked against the model now (a bad adapter is
    refused here, before anything is applied), applied only while the returned bundle generates."""
    strength = check_strength(strength)
    if not isinstance(bundle, ModelBundle):
        raise InputError("model", f"is a served model ({getattr(bundle, 'model', type(bundle).__name__)!r}); a LoRA "
                         "is applied by the server there.", "Start vLLM with --enable-lora --lora-modules "
                         "NAME=/path/to/adapter and set Qwen3-VL Server Model's model to NAME.")
    path = resolve_adapter_path(lora, list(search_dirs or []), input_name)
    check_adapter_folder(path, input_name)
    ref = AdapterRef(str(path), strength, fingerprint(path))
    with _APPLY_LOCK:
        prepared = _prepare(bundle, ref, input_name)
    ref = replace(ref, modules=prepared.changed)
    logger.info("LoRA %s: %d modules changed at strength %g%s", ref.name, prepared.changed, strength,
                f" ({prepared.remapped} keys remapped to this model's layout)" if prepared.remapped else "")
    return replace(bundle, adapters=(*bundle.adapters, ref))


def describe(bundle) -> str:
    """The model for ``info``: the folder name, then each adapter with its strength and modules changed."""
    name = Path(bundle.path).name
    for ref in getattr(bundle, "adapters", ()):
        name += f" + LoRA {ref.name} (strength {ref.strength:g}, {ref.modules} modules)"
    return name


@contextmanager
def applied(bundle) -> Iterator[None]:
    """Run the body with ``bundle``'s adapters in its model, and the model exactly as before afterwards."""
    with _APPLY_LOCK:
        refs = [r for r in getattr(bundle, "adapters", ()) if r.strength != 0.0]
        if not refs:
            yield
            return
        modules = dict(bundle.model.named_modules())
        plans = [(_prepare(bundle, ref, "lora"), ref.strength) for ref in refs]  # every check before any hook
        handles = []
        try:
            for prepared, strength in plans:
                for name, (a, b, scaling) in prepared.weights.items():
                    handles.append(modules[name].register_forward_hook(_lora_hook(a, b, scaling * strength),
                                                                       with_kwargs=True))
            yield
        finally:
            for handle in handles:
                handle.remove()


def _lora_hook(a: torch.Tensor, b: torch.Tensor, scaling: float):
    def hook(module, args, kwargs, output):
        x = args[0] if args else kwargs["input"]
        delta = torch.nn.functional.linear(torch.nn.functional.linear(x.to(a.dtype), a), b) * scaling
        return (output + delta).to(output.dtype)
    return hook


def forget(bundle: ModelBundle) -> None:
    """Drop the adapters matched to ``bundle``'s model (they are also dropped when the model is unloaded)."""
    with _APPLY_LOCK:
        _store(bundle).clear()


def _store(bundle: ModelBundle) -> OrderedDict[tuple, _Prepared]:
    return attached(bundle).setdefault("lora", OrderedDict())


def _prepare(bundle: ModelBundle, ref: AdapterRef, input_name: str) -> _Prepared:
    store, key = _store(bundle), (ref.path, ref.fingerprint)
    if key in store:
        store.move_to_end(key)
        return store[key]
    path = Path(ref.path)
    weights_file = check_adapter_folder(path, input_name)
    if fingerprint(path) != ref.fingerprint:
        raise InputError(input_name, f"the adapter in {printable(path)!r} changed on disk after the LoRA node "
                         "checked it.", "Run the graph again (the LoRA node reads the new files).")
    config = read_adapter_config(path, input_name)
    state = _read_weights(weights_file, input_name)
    prepared = _match(bundle.model, config, state, path, input_name)
    store[key] = prepared
    while len(store) > _PREPARED_MAX:
        store.popitem(last=False)
    return prepared


def _read_weights(file: Path, input_name: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(file))
    except (OSError, SafetensorError, ValueError) as err:
        raise InputError(input_name, f"{printable(file)!r} cannot be read ({str(err)[:200]}).",
                         "Save the adapter again; the file is damaged.") from err


def split_keys(state: dict[str, torch.Tensor], config: AdapterConfig, input_name: str = "lora"
               ) -> dict[str, dict[str, torch.Tensor]]:
    """``{module path: {"A": tensor, "B": tensor, "key": first key as stored}}`` with peft's ``base_model.model.`` prefix, the adapter name
    (``lora_A.default.weight``) and torch.compile's ``_orig_mod.`` removed. Anything else is refused."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    others = []
    for key, tensor in state.items():
        match = _KEY.match(key)
        if not match:
            others.append(key)
            continue
        name = match["module"].replace("_orig_mod.", "")
        name = name[len("base_model.model."):] if name.startswith("base_model.model.") else name
        modules.setdefault(name, {})[match["ab"]] = tensor
        modules[name].setdefault("key", key)  # type: ignore[arg-type]  # as stored, for messages
    if others:
        saved = " (modules_to_save: " + ", ".join(config.modules_to_save) + ")" if config.modules_to_save else ""
        raise InputError(input_name, f"the adapter holds {len(others)} weight(s) that are not LoRA A/B matrices"
                         f"{saved}, e.g. {', '.join(sorted(others)[:3])}; this node applies LoRA matrices only "
                         "(ignoring the rest would give wrong answers).", MERGE_ADVICE)
    half = sorted(n for n, ab in modules.items() if not {"A", "B"} <= set(ab))
    if half:
        raise InputError(input_name, f"the adapter has lora_A without lora_B (or the reverse) for {half[0]}.",
                         "Save the adapter again; the file is incomplete.")
    if not modules:
        raise InputError(input_name, "the adapter holds no LoRA weights.", "Save the adapter again.")
    return modules


def canonical(name: str) -> tuple[str, str] | None:
    """A module name without its wrapper path: ``("text", "layers.0.self_attn.q_proj")``, ``("vision",
    "blocks.0.attn.qkv")``, ``("head", "lm_head")``; None when the wrapper path holds unknown segments."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part in _ROOTS:
            wrapper = parts[:i]
            if not set(wrapper) <= _WRAPPERS:
                return None
            tower = "vision" if set(wrapper) & _VISION_WRAPPERS else _ROOTS[part]
            return tower, ".".join(parts[i:])
    return None


def _match(model, config: AdapterConfig, state: dict, path: Path, input_name: str) -> _Prepared:
    lora = split_keys(state, config, input_name)
    named = dict(model.named_modules())
    by_canon: dict[tuple[str, str], str | None] = {}
    for name in named:
        canon = canonical(name)
        if canon is not None:
            by_canon[canon] = None if canon in by_canon else name  # None: two modules, ambiguous
    targets, unmatched, remapped = {}, [], 0
    for name in sorted(lora):
        target = name if name in named else by_canon.get(canonical(name) or ("", ""))
        if target is None:
            unmatched.append(name)
        else:
            remapped += target != name
            targets[name] = target
    if unmatched:
        raise InputError(input_name, f"{len(unmatched)} of {len(lora)} modules of the adapter match nothing in "
                         f"this model, e.g. {', '.join(lora[n]['key'] for n in unmatched[:3])}. Here they look like "
                         f"{_examples(named)}{_trained_for(config)}.", "Use an adapter trained on this model "
                         "(Qwen3-VL with the same size and family); nothing was applied.")
    weights, changed = {}, 0
    for name, target in targets.items():
        a, b = _checked(named[target], target, lora[name], input_name, config)
        try:
            scaling = config.scaling((name, target), int(a.shape[0]))
        except ValueError as err:
            raise InputError(input_name, f"adapter_config.json says rank {err} for {target}, but its lora_A has rank "
                             f"{a.shape[0]}.", "Save the adapter again; config and weights disagree.") from None
        if torch.count_nonzero(b):
            weights[target] = (a, b, scaling)
            changed += 1
    if not changed:
        raise InputError(input_name, f"every lora_B matrix of the adapter in {printable(path)!r} is zero, so it "
                         "changes nothing (an adapter saved before training?).", "Pick the trained checkpoint.")
    return _Prepared(weights, changed, remapped)


def _checked(module, name: str, ab: dict[str, torch.Tensor], input_name: str, config: AdapterConfig):
    weight = getattr(module, "weight", None)
    if not isinstance(module, torch.nn.Linear) or weight is None:
        raise InputError(input_name, f"the adapter targets {name}, a {type(module).__name__}; this node applies "
                         "LoRA to linear layers only.", MERGE_ADVICE)
    a, b = ab["A"], ab["B"]
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != module.in_features or b.shape[0] != module.out_features \
            or b.shape[1] != a.shape[0]:
        raise InputError(input_name, f"lora_A {list(a.shape)} / lora_B {list(b.shape)} of {name} do not fit the "
                         f"module ({module.in_features} inputs, {module.out_features} outputs): the adapter was "
                         f"trained for another base model{_trained_for(config)}.",
                         "Use the base model the adapter was trained on; nothing was applied.")
    dtype = weight.dtype if weight.dtype in (torch.float32, torch.float64) else torch.float32
    device = weight.device if weight.device.type != "meta" else torch.device("cpu")
    return a.to(device=device, dtype=dtype).contiguous(), b.to(device=device, dtype=dtype).contiguous()


def _examples(named: dict) -> str:
    linear = [n for n, m in named.items() if isinstance(m, torch.nn.Linear)]
    text = next((n for n in linear if (canonical(n) or ("",))[0] == "text"), None)
    vision = next((n for n in linear if (canonical(n) or ("",))[0] == "vision"), None)
    return " and ".join(f"{n} ({kind})" for n, kind in ((text, "text"), (vision, "vision")) if n) or "nothing"


def _trained_for(config: AdapterConfig) -> str:
    return f" (adapter_config.json names the base {config.base_model!r})" if config.base_model else ""


_WRAPPER_PREFIX = {"text": "model.language_model.", "vision": "model.visual.", "head": ""}


def to_wrapper_layout(src: str, dst: str, input_name: str = "adapter") -> int:
    """Write a copy of the adapter folder ``src`` in ``dst`` with every key in the vision-language wrapper layout
    (``base_model.model.model.language_model.layers.N...``, ``base_model.model.model.visual...``), the layout
    vLLM maps; vLLM 0.32 serves a text-only-layout adapter as a silent no-op. Returns the modules rewritten."""
    from safetensors.torch import save_file

    path = resolve_adapter_path(src, [], input_name)
    config = read_adapter_config(path, input_name)
    lora = split_keys(_read_weights(check_adapter_folder(path, input_name), input_name), config, input_name)
    out, unknown = {}, []
    for name, ab in lora.items():
        canon = canonical(name)
        if canon is None:
            unknown.append(ab["key"])
            continue
        for part in ("A", "B"):
            out[f"base_model.model.{_WRAPPER_PREFIX[canon[0]]}{canon[1]}.lora_{part}.weight"] = ab[part].contiguous()
    if unknown:
        raise InputError(input_name, f"{len(unknown)} key(s) are in no known Qwen3-VL layout, e.g. "
                         f"{', '.join(sorted(unknown)[:3])}.", "This adapter was not trained on Qwen3-VL.")
    target = Path(dst).expanduser()
    if target.resolve() == path or (target.exists() and any(target.iterdir())):
        raise InputError("output", f"{printable(target)!r} is the adapter itself or a folder that is not empty.",
                         "Give a new (or empty) folder; nothing is overwritten.")
    target.mkdir(parents=True, exist_ok=True)
    save_file(out, str(target / "adapter_model.safetensors"), metadata={"format": "pt"})
    (target / "adapter_config.json").write_bytes((path / "adapter_config.json").read_bytes())
    return len(lora)
