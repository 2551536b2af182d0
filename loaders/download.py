"""The only code in the pack that touches the network: fetch a Qwen3-VL repository with huggingface_hub."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from ..utils.errors import InputError, ModelLoadError
from .resolve import check_tokenizer_files, check_weights, read_family

logger = logging.getLogger(__name__)

OFFICIAL_REPOS = tuple(
    f"Qwen/Qwen3-VL-{size}-{kind}"
    for size in ("2B", "4B", "8B", "32B", "30B-A3B", "235B-A22B")
    for kind in ("Instruct", "Thinking")
)
# Everything a model folder needs, and no pickle weights (*.bin, *.pt, *.pth are never fetched).
ALLOW_PATTERNS = ["*.safetensors", "*.json", "*.jinja", "*.txt", "*.md", "LICENSE*"]
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def check_repo_id(repo_id: str, input_name: str = "repo_id") -> str:
    repo_id = (repo_id or "").strip()
    if not _REPO_ID.match(repo_id) or ".." in repo_id:
        raise InputError(input_name, f"{repo_id!r} is not a Hugging Face repository id.",
                         "Use the form owner/name, e.g. Qwen/Qwen3-VL-2B-Instruct.")
    return repo_id


def is_complete(folder: Path) -> bool:
    """A loadable Qwen3-VL folder (the loader's own checks) with every shard its index lists."""
    if not folder.is_dir():
        return False
    try:
        read_family(folder)
        check_weights(folder)
        check_tokenizer_files(folder)
    except ModelLoadError:
        return False
    index = folder / "model.safetensors.index.json"
    if not index.is_file():
        return True
    try:
        shards = set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values())
    except (OSError, json.JSONDecodeError):
        return False
    return all((folder / s).is_file() for s in shards)


def download_model(repo_id: str, models_dir: str | Path, revision: str | None = None,
                   input_name: str = "repo_id") -> Path:
    """Download ``repo_id`` into ``models_dir/<repo name>`` (resumable, safetensors only).

    A folder that is already complete is returned without any network access.
    """
    repo_id = check_repo_id(repo_id, input_name)
    dest = Path(models_dir) / repo_id.split("/")[-1]
    if is_complete(dest):
        logger.info("%s is already in %s; nothing to download", repo_id, dest)
        return dest
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled
    except ImportError as err:
        raise ModelLoadError(input_name, "downloading needs the huggingface_hub package.",
                             "Run `pip install huggingface_hub` in ComfyUI's Python.") from err
    manual = (f"Download the files of https://huggingface.co/{repo_id} (config.json, *.safetensors, "
              f"tokenizer*, *processor*/preprocessor* and chat_template files) by hand into {dest}.")
    dest.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s into %s", repo_id, dest)
    try:
        snapshot_download(repo_id=repo_id, revision=revision, local_dir=str(dest), allow_patterns=ALLOW_PATTERNS)
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as err:
        raise ModelLoadError(input_name, f"cannot reach the Hugging Face Hub to download {repo_id} "
                             f"(offline: {type(err).__name__}).", manual) from err
    except HfHubHTTPError as err:
        raise ModelLoadError(input_name, f"the Hub refused {repo_id} ({err}).",
                             "Check the repository id (and your token for gated repositories). " + manual) from err
    except OSError as err:
        raise ModelLoadError(input_name, f"downloading {repo_id} failed ({err}).",
                             "Check the network and free disk space, then run again: finished files are kept. "
                             + manual) from err
    read_family(dest, input_name)
    check_weights(dest, input_name)
    check_tokenizer_files(dest, input_name)
    return dest
