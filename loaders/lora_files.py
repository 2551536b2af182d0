"""Find and read a PEFT LoRA adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``).

ms-swift (``--train_type lora``), LLaMA-Factory and unsloth all save this folder with peft's
``save_pretrained``. Everything here is checked before any weight touches a model: a bad folder is refused
with the input named and nothing applied.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from ..utils.errors import InputError
from ..utils.safe_files import is_regular_file, printable
from .resolve import PICKLE_SUFFIXES, clean_path_text

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
MAX_CONFIG_BYTES = 1024 * 1024
MAX_DEPTH = 3  # models/loras/<run>/<version>/<checkpoint-N>: ms-swift nests its checkpoints this deep

# adapter_config.json switches this pack does not apply: each would change the answer if it were ignored.
UNSUPPORTED = {
    "use_dora": "DoRA (use_dora)",
    "target_parameters": "LoRA on raw parameters (target_parameters, e.g. fused MoE experts)",
    "lora_bias": "LoRA bias terms (lora_bias)",
    "layer_replication": "layer replication",
    "trainable_token_indices": "trainable token indices",
    "alora_invocation_tokens": "activated LoRA (alora_invocation_tokens)",
    "use_qalora": "QA-LoRA",
    "use_bdlora": "block-diagonal LoRA",
}
MERGE_ADVICE = ("Merge the adapter into the base model with the tool that trained it (ms-swift `swift export "
                "--merge_lora true`, LLaMA-Factory `llamafactory-cli export`, unsloth `save_pretrained_merged`, or "
                "peft `merge_and_unload()`) and load the merged folder with Qwen3-VL Model Loader.")


@dataclass(frozen=True)
class AdapterConfig:
    """The parts of ``adapter_config.json`` that decide the answer."""

    r: int
    alpha: float
    use_rslora: bool
    rank_pattern: dict[str, int]
    alpha_pattern: dict[str, float]
    modules_to_save: tuple[str, ...]
    base_model: str

    def scaling(self, names: tuple[str, ...], rank: int) -> float:
        """peft's ``lora_alpha / r`` (``/ sqrt(r)`` with rsLoRA) for the module known by ``names``."""
        r = _pattern_value(self.rank_pattern, names, self.r)
        alpha = _pattern_value(self.alpha_pattern, names, self.alpha)
        if r != rank:
            raise ValueError(r)
        return alpha / math.sqrt(r) if self.use_rslora else alpha / r


def _pattern_value(pattern: dict, names: tuple[str, ...], default):
    """peft's rank/alpha patterns: a key applies to a module whose name equals it or ends with ``.<key>``."""
    import re

    for key, value in pattern.items():
        for name in names:
            if name == key or re.match(rf"(.*\.)?({key})$", name):
                return value
    return default


def list_adapter_folders(search_dirs: list[str]) -> list[str]:
    """Folders holding ``adapter_config.json`` under ``search_dirs``, as relative names (``run/checkpoint-50``),
    sorted and unique. Never raises (INPUT_TYPES calls it): unreadable folders are left out."""
    names: set[str] = set()
    for base in search_dirs:
        if not os.path.isdir(base):
            continue
        for root, dirs, files in os.walk(base, followlinks=True):
            rel = os.path.relpath(root, base)
            depth = 0 if rel == "." else rel.count(os.sep) + 1
            if CONFIG_FILE in files and depth:
                names.add(Path(rel).as_posix())
            dirs[:] = [d for d in dirs if not d.startswith(".")] if depth < MAX_DEPTH else []
    return sorted(names)


def resolve_adapter_path(name: str, search_dirs: list[str], input_name: str = "lora") -> Path:
    """An absolute adapter folder, or a relative name found under one of ``search_dirs``."""
    name = clean_path_text(name)
    if not name:
        raise InputError(input_name, "no adapter chosen.", "Put the adapter folder (adapter_config.json + "
                         "adapter_model.safetensors) in ComfyUI/models/loras/ and pick it, or give its absolute "
                         "folder in lora_path.")
    candidate = Path(os.path.expanduser(name))
    if not candidate.is_absolute():
        found = [Path(base) / name for base in search_dirs if (Path(base) / name).is_dir()]
        if not found:
            where = ", ".join(search_dirs) or "none registered"
            raise InputError(input_name, f"no adapter folder named {name!r} (looked in {where}).",
                             "Pick one from the list, or give an absolute folder in lora_path.")
        candidate = found[0]
    if candidate.is_file():
        raise InputError(input_name, f"{printable(candidate)!r} is a file, not an adapter folder.",
                         f"Give the folder that holds {CONFIG_FILE}, e.g. {printable(candidate.parent)!r}.")
    if not candidate.is_dir():
        raise InputError(input_name, f"folder {printable(candidate)!r} does not exist.", "Check the path.")
    return candidate.resolve()


def check_adapter_folder(path: Path, input_name: str = "lora") -> Path:
    """The folder's safetensors weights file; refuses a folder without a config, or with pickle weights only."""
    config = path / CONFIG_FILE
    if not is_regular_file(config):
        hint = " (it holds config.json: that is a model; load it with Qwen3-VL Model Loader)" \
            if (path / "config.json").is_file() else ""
        raise InputError(input_name, f"{printable(path)!r} has no {CONFIG_FILE}, so it is not a PEFT LoRA "
                         f"adapter{hint}.", "Pick the folder that the trainer saved (ms-swift checkpoint-N, "
                         "LLaMA-Factory output_dir, unsloth save_pretrained): it holds adapter_config.json and "
                         "adapter_model.safetensors.")
    weights = path / WEIGHTS_FILE
    if is_regular_file(weights):
        return weights
    pickles = sorted(p.name for p in path.iterdir() if p.name.startswith("adapter_model")
                     and p.name.endswith(PICKLE_SUFFIXES))
    if pickles:
        raise InputError(input_name, f"{printable(path)!r} has the adapter weights only as a pickle file "
                         f"({', '.join(pickles)}); this pack loads safetensors only, because pickle files can "
                         "run code when loaded.", "Save the adapter again with safe_serialization=True (peft's "
                         "default), or convert it once with a trusted script (torch.load + "
                         "safetensors.torch.save_file).")
    raise InputError(input_name, f"{printable(path)!r} has no {WEIGHTS_FILE}.",
                     "Copy the adapter's weights file next to adapter_config.json.")


def fingerprint(path: Path) -> tuple[int, int, int, int]:
    """Sizes and modification times of the config and the weights: a changed adapter is read again."""
    a, b = (path / CONFIG_FILE).stat(), (path / WEIGHTS_FILE).stat()
    return a.st_size, a.st_mtime_ns, b.st_size, b.st_mtime_ns


def read_adapter_config(path: Path, input_name: str = "lora") -> AdapterConfig:
    """``adapter_config.json``: a LoRA with a numeric rank and alpha, and no switch this pack cannot apply."""
    file = path / CONFIG_FILE
    try:
        if file.stat().st_size > MAX_CONFIG_BYTES:
            raise ValueError("far too large for an adapter config")
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise InputError(input_name, f"{CONFIG_FILE} in {printable(path)!r} cannot be read "
                         f"({type(err).__name__}: {str(err)[:200]}).", "Save the adapter again.") from err
    if not isinstance(raw, dict):
        raise InputError(input_name, f"{CONFIG_FILE} in {printable(path)!r} is not a JSON object.",
                         "Save the adapter again.")
    kind = raw.get("peft_type", "LORA")
    if str(kind).upper() != "LORA":
        raise InputError(input_name, f"{printable(path)!r} is a {kind} adapter; this node applies LoRA only.",
                         MERGE_ADVICE)
    for field, label in UNSUPPORTED.items():
        if raw.get(field) not in (None, False, [], {}, "none"):
            raise InputError(input_name, f"{printable(path)!r} uses {label}, which this node does not apply "
                             "(ignoring it would give wrong answers).", MERGE_ADVICE)
    r = _number(raw.get("r"), "r", path, input_name, whole=True)
    alpha = _number(raw.get("lora_alpha", r), "lora_alpha", path, input_name)
    patterns = []
    for field, whole in (("rank_pattern", True), ("alpha_pattern", False)):
        value = raw.get(field) or {}
        if not isinstance(value, dict):
            raise InputError(input_name, f"{CONFIG_FILE}: {field} must be an object, got {value!r}.",
                             "Save the adapter again.")
        patterns.append({str(k): _number(v, f"{field}[{k!r}]", path, input_name, whole) for k, v in value.items()})
    modules = raw.get("modules_to_save") or ()
    return AdapterConfig(r=int(r), alpha=float(alpha), use_rslora=bool(raw.get("use_rslora", False)),
                         rank_pattern=patterns[0], alpha_pattern=patterns[1],
                         modules_to_save=tuple(str(m) for m in modules) if isinstance(modules, list) else (str(modules),),
                         base_model=str(raw.get("base_model_name_or_path") or ""))


def _number(value, field: str, path: Path, input_name: str, whole: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if ok and whole and float(value) != int(value):
        ok = False
    if not ok:
        kind = "a whole number > 0" if whole else "a number > 0"
        raise InputError(input_name, f"{CONFIG_FILE} in {printable(path)!r}: {field} must be {kind}, got "
                         f"{value!r}.", "Fix the value (the trainer wrote it from its --lora_rank / --lora_alpha "
                         "settings) or save the adapter again.")
    return value
