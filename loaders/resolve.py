"""Find a Qwen3-VL / Qwen3.5 model folder and check it before anything is loaded."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..utils.errors import ModelLoadError
from ..utils.safe_files import is_regular_file, printable
from .families import FAMILY_TABLE, TEXT_ONLY_TYPES, check_transformers, known_types

logger = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
MAX_CONFIG_BYTES = 1024 * 1024  # a real Qwen3-VL config.json is about 5 KB; anything this big is not one
_REPORTED: set[str] = set()  # model-list entries already warned about (ComfyUI lists the models often)


def _warn_once(path: str, what: str) -> None:
    if path not in _REPORTED:
        _REPORTED.add(path)
        logger.warning("skipping %s in the model folder list (%s)", printable(path), what)


def list_model_folders(search_dirs: list[str]) -> list[str]:
    """Names of sub-folders holding a ``config.json`` in any of ``search_dirs`` (sorted, unique).

    Never raises (the loader's INPUT_TYPES calls it: an error would make the node vanish from ComfyUI): an
    unreadable folder, a dangling link or a link loop is logged and left out.
    """
    names: set[str] = set()
    for base in search_dirs:
        try:
            entries = list(os.scandir(base)) if os.path.isdir(base) else []
        except OSError as err:
            _warn_once(base, f"cannot list it: {err.strerror or err}")
            continue
        for entry in entries:
            try:
                if entry.is_dir() and is_regular_file(os.path.join(entry.path, "config.json")):
                    names.add(entry.name)
            except OSError as err:  # a link loop (ELOOP) or a folder that vanished meanwhile
                _warn_once(entry.path, str(err.strerror or err))
    return sorted(names)


def clean_path_text(name: str) -> str:
    """A typed or pasted path: whitespace and newlines around it and one pair of surrounding quotes removed."""
    name = (name or "").strip()
    if len(name) >= 2 and name[0] == name[-1] and name[0] in "\"'":
        name = name[1:-1].strip()
    return name


def resolve_model_path(name: str, search_dirs: list[str], input_name: str = "model") -> Path:
    """An absolute folder, or a folder name found in one of ``search_dirs`` (first match wins).

    Quotes and whitespace around a pasted path are ignored; a file (e.g. the folder's config.json) is refused
    with the folder to give instead.
    """
    name = clean_path_text(name)
    if not name:
        raise ModelLoadError(input_name, f"no model chosen; {_folders_found(search_dirs)}.",
                             "Put a Qwen3-VL folder in ComfyUI/models/LLM/ and pick it, or give an "
                             "absolute folder in model_path.")
    candidate = Path(os.path.expanduser(name))
    if candidate.is_absolute():
        if candidate.is_file():
            raise ModelLoadError(input_name, f"{printable(candidate)!r} is a file, not a model folder.",
                                 f"Give the folder that holds config.json and the weights, e.g. "
                                 f"{printable(candidate.parent)!r}.")
        if not candidate.is_dir():
            raise ModelLoadError(input_name, f"folder {printable(candidate)!r} does not exist.",
                                 "Check the path, or download the model into ComfyUI/models/LLM/.")
        return candidate.resolve()
    for base in search_dirs:
        path = Path(base) / name
        if path.is_dir():
            return path.resolve()
    raise ModelLoadError(input_name, f"no folder named {name!r} in the LLM model paths; "
                         f"{_folders_found(search_dirs)}.",
                         "Pick one of those, put the model folder in ComfyUI/models/LLM/, or give an absolute "
                         "folder in model_path (a workflow from another machine may name a folder you call "
                         "differently).")


def _folders_found(search_dirs: list[str]) -> str:
    """What is there, for an error: the model folders found and where they were looked for."""
    where = ", ".join(search_dirs) or "none registered"
    found = list_model_folders(search_dirs)
    shown = ", ".join(found[:20]) + (f" and {len(found) - 20} more" if len(found) > 20 else "")
    return f"folders found: {shown} (in {where})" if found else f"no model folder found (looked in {where})"


def read_config(path: Path, input_name: str = "model") -> dict:
    """The folder's ``config.json`` as a dict (size-checked; a clear error when missing or damaged)."""
    config_file = path / "config.json"
    if not is_regular_file(config_file):
        raise ModelLoadError(input_name, f"{str(path)!r} has no config.json"
                             f"{' (only a broken link or a special file by that name)' if os.path.lexists(config_file) else ''}.",
                             "Point at the folder of a Hugging Face Qwen3-VL or Qwen3.5 download (it holds "
                             "config.json, *.safetensors, tokenizer and processor files).")
    size = config_file.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ModelLoadError(input_name, f"config.json in {str(path)!r} has {size} bytes; a Qwen config has a "
                             "few KB, so this is not one (it was not read).", "Re-download the model's config.json.")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ModelLoadError(input_name, f"config.json in {str(path)!r} cannot be read ({type(err).__name__}: "
                             f"{str(err)[:200]}).",
                             "Re-download the model; the file is damaged.") from err
    return config if isinstance(config, dict) else {}


def read_family(path: Path, input_name: str = "model") -> str:
    """The ``model_type`` from ``config.json``, one of the rows of ``families.FAMILY_TABLE`` (``qwen3_vl``,
    ``qwen3_vl_moe``, ``qwen3_5``, ``qwen3_5_moe``), runnable by the installed transformers."""
    config = read_config(path, input_name)
    model_type = config.get("model_type")
    if model_type in TEXT_ONLY_TYPES:
        raise ModelLoadError(input_name, f"config.json says model_type {model_type!r}: a text-only conversion "
                             "without the vision tower (no vision_config, no model.visual.* weights), so it cannot "
                             "see images or video.",
                             f"Download the full vision-language checkpoint (model_type "
                             f"{TEXT_ONLY_TYPES[model_type]!r}, e.g. from the official Qwen repositories).")
    if model_type not in FAMILY_TABLE:
        raise ModelLoadError(input_name, f"config.json says model_type {model_type!r}, which is not Qwen3-VL or "
                             f"Qwen3.5 (this pack runs model_type {known_types()}).",
                             "Choose a Qwen3-VL (dense 2B-32B, MoE 30B-A3B/235B-A22B) or Qwen3.5/3.6/3.8 folder "
                             "(dense 0.8B-27B, MoE 35B-A3B/122B-A10B/397B-A17B).")
    if not isinstance(config.get("vision_config"), dict):
        raise ModelLoadError(input_name, f"config.json in {str(path)!r} (model_type {model_type!r}) has no "
                             "vision_config: the vision tower is missing (a text-only conversion).",
                             "Download the full vision-language checkpoint from the official Qwen repositories.")
    check_transformers(FAMILY_TABLE[model_type], input_name)
    return model_type


def read_own_quantization(path: Path) -> str | None:
    """The ``quant_method`` of the ``quantization_config`` in the folder's ``config.json`` (``fp8``, ``awq``,
    ``gptq``, ``compressed-tensors``, ...), or None for plain weights. Such folders load with their own
    quantization (transformers reads it from config.json); call after :func:`read_family`."""
    try:
        config = read_config(path)
    except ModelLoadError:
        return None  # read_family has already reported a damaged config.json
    quant = config.get("quantization_config")
    if not isinstance(quant, dict) or not quant:
        return None
    return str(quant.get("quant_method") or quant.get("format") or "unknown method")


def check_weights(path: Path, input_name: str = "model") -> None:
    """Refuse folders whose weights are only pickle files (``.bin``/``.pt``): safetensors only. Broken links and
    special files among the weights, and shards that the index lists but the folder lacks, are named."""
    try:
        entries = list(os.scandir(path))
    except OSError as err:
        raise ModelLoadError(input_name, f"cannot list {printable(path)!r} ({err.strerror or err}).",
                             "Fix the folder's permissions.") from err
    broken = sorted(e.name for e in entries if e.name.endswith(".safetensors") and not is_regular_file(e.path))
    if broken:
        raise ModelLoadError(input_name, f"{printable(path)!r}: {', '.join(map(printable, broken[:3]))} "
                             "is a broken symbolic link, a link loop or not a regular file.",
                             "Fix or remove the link (or re-download those weights).")
    files = [e.name for e in entries if is_regular_file(e.path)]
    if any(f.endswith(".safetensors") for f in files):
        _check_index(path, set(files), input_name)
        return
    pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise ModelLoadError(input_name, f"{str(path)!r} has weights only as pickle files "
                             f"({', '.join(sorted(pickles)[:3])}); this pack loads safetensors only, "
                             "because pickle files can run code when loaded.",
                             "Download the safetensors version of the model (the official Qwen "
                             "repositories ship *.safetensors).")
    raise ModelLoadError(input_name, f"{str(path)!r} has no *.safetensors weights.",
                         "Finish or redo the download: the weight files are missing.")


def _check_index(path: Path, files: set[str], input_name: str) -> None:
    """Every shard named by ``model.safetensors.index.json`` must be in the folder."""
    index = path / "model.safetensors.index.json"
    if "model.safetensors.index.json" not in files:
        return
    try:
        shards = {str(s) for s in _weight_map(index).values()}
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, RecursionError) as err:
        raise ModelLoadError(input_name, f"model.safetensors.index.json in {str(path)!r} cannot be read "
                             f"({str(err)[:200]}).", "Re-download the model's index file.") from err
    missing = sorted(shards - files)
    if missing:
        raise ModelLoadError(input_name, f"{str(path)!r} lacks {len(missing)} weight shard(s) its index lists "
                             f"({', '.join(missing[:3])}).", "Finish the download: some weight files are missing.")


def _weight_map(index: Path):
    """The ``weight_map`` (tensor name -> shard file) of ``model.safetensors.index.json``, size-checked; raises
    OSError, ValueError (JSON and size), UnicodeDecodeError, AttributeError or RecursionError when unreadable."""
    if index.stat().st_size > 64 * MAX_CONFIG_BYTES:
        raise ValueError("far too large for a weight index")
    return json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})


def weight_names(path: Path) -> set[str] | None:
    """Names of the tensors in the folder's safetensors (from the index, else each file's header), or None when
    they cannot be read here (from_pretrained then reports the damage)."""
    index = path / "model.safetensors.index.json"
    try:
        if is_regular_file(index):
            weight_map = _weight_map(index)
            return {str(k) for k in weight_map} if isinstance(weight_map, dict) else None
        names: set[str] = set()
        for shard in sorted(path.glob("*.safetensors")):
            with open(shard, "rb") as fh:
                size = int.from_bytes(fh.read(8), "little")
                if not 2 <= size <= 64 * MAX_CONFIG_BYTES:
                    return None
                header = json.loads(fh.read(size).decode("utf-8"))
            names.update(k for k in header if k != "__metadata__")
        return names
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, RecursionError):
        return None


def check_vision_weights(path: Path, input_name: str = "model") -> None:
    """Refuse a folder whose weights hold no vision tower (a text-only conversion under a vision-language
    config.json): it would load with a randomly initialised vision tower, or not at all."""
    names = weight_names(path)
    if names is None or not names:
        return
    if not any(n.startswith(("model.visual.", "visual.")) or ".visual." in n for n in names):
        raise ModelLoadError(input_name, f"{printable(path)!r} has no vision-tower weights (no model.visual.* "
                             f"tensor among its {len(names)} weights): it is a text-only conversion, so it cannot "
                             "see images or video.",
                             "Download the full vision-language checkpoint (the official Qwen repositories ship "
                             "the vision tower in the same safetensors).")


def check_tokenizer_files(path: Path, input_name: str = "model") -> None:
    """The tokenizer must be there: without it transformers silently builds an empty vocabulary."""
    has_json = (path / "tokenizer.json").is_file()
    has_bpe = (path / "vocab.json").is_file() and (path / "merges.txt").is_file()
    if not (has_json or has_bpe):
        raise ModelLoadError(input_name, f"the processor/tokenizer files in {str(path)!r} cannot be loaded "
                             "(no tokenizer.json, nor vocab.json + merges.txt).",
                             "Copy the tokenizer files of the model into the folder (re-download it).")
