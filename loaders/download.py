"""The only code in the pack that touches the network: fetch a Qwen3-VL / Qwen3.5 repository with huggingface_hub."""

from __future__ import annotations

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
) + tuple(  # Qwen3.5 (Feb 2026) and the same architecture in Qwen3.6 / Qwen3.8: one hybrid-thinking model per size
    f"Qwen/Qwen3.5-{size}" for size in ("0.8B", "2B", "4B", "9B", "27B", "35B-A3B", "122B-A10B", "397B-A17B")
) + tuple(f"Qwen/Qwen3.5-{size}-FP8" for size in ("27B", "35B-A3B", "122B-A10B", "397B-A17B")) + (
    "Qwen/Qwen3.6-27B", "Qwen/Qwen3.6-35B-A3B", "Qwen/Qwen3.8-27B", "Qwen/Qwen3.8-27B-FP8",
)
# Everything a model folder needs, and no pickle weights (*.bin, *.pt, *.pth are never fetched).
ALLOW_PATTERNS = ["*.safetensors", "*.json", "*.jinja", "*.txt", "*.md", "LICENSE*"]
# Hugging Face's rules (huggingface_hub.utils.validate_repo_id), ASCII only as on the Hub: owner/name, each of
# letters, digits, "-", "_", ".", not starting or ending with "-" or ".", name at most 96 characters.
_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?"
_REPO_ID = re.compile(rf"{_PART}/{_PART}")
REPO_ID_ADVICE = "Use the form owner/name, e.g. Qwen/Qwen3-VL-2B-Instruct."


def check_repo_id(repo_id: str, input_name: str = "repo_id") -> str:
    """A repository id that the Hub accepts, checked before any folder is created or the network is used."""
    if not isinstance(repo_id, str):
        raise InputError(input_name, f"expected text, got {type(repo_id).__name__}.", REPO_ID_ADVICE)
    repo_id = repo_id.strip()
    name = repo_id.rsplit("/", 1)[-1]
    problem = None
    if not _REPO_ID.fullmatch(repo_id):
        problem = "must be owner/name with only letters, digits, '-', '_' and '.' (not first or last)"
    elif "--" in repo_id or ".." in repo_id:
        problem = "cannot contain '--' or '..'"
    elif repo_id.endswith(".git") or len(name) > 96:
        problem = "cannot end with .git or have a name longer than 96 characters"
    if problem is None:
        try:
            from huggingface_hub.utils import HFValidationError, validate_repo_id
        except ImportError:  # download_model says what to install
            return repo_id
        try:
            validate_repo_id(repo_id)
        except HFValidationError as err:
            problem = str(err)
    if problem is not None:
        raise InputError(input_name, f"{repo_id[:120]!r} is not a Hugging Face repository id: {problem}.",
                         REPO_ID_ADVICE)
    return repo_id


def check_revision(revision: str | None, input_name: str = "revision") -> str | None:
    """A branch, tag or commit (empty = main): no spaces, control characters or '..'."""
    revision = (revision or "").strip()
    if not revision:
        return None
    if ".." in revision or any(c.isspace() or not c.isprintable() for c in revision) or len(revision) > 256:
        raise InputError(input_name, f"{revision[:80]!r} is not a branch, tag or commit.",
                         "Leave it empty for main, or give a branch name, a tag or a commit hash.")
    return revision


def _prepare_destination(models_dir: Path, dest: Path, input_name: str) -> None:
    """The models folder must be a writable folder and ``dest`` a folder (or not exist yet)."""
    if models_dir.exists() and not models_dir.is_dir():
        raise ModelLoadError(input_name, f"the models folder {str(models_dir)!r} is a file.",
                             "Fix the LLM entry of extra_model_paths.yaml, or remove that file.")
    if dest.exists() and not dest.is_dir():
        raise ModelLoadError(input_name, f"{str(dest)!r} is a file, not a model folder.",
                             "Move or delete that file, then run again.")
    try:
        dest.mkdir(parents=True, exist_ok=True)
        probe = dest / ".qwen3vl-write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ModelLoadError(input_name, f"cannot write into {str(dest)!r} ({err.strerror or err}).",
                             "Make the models folder writable (or list a writable LLM folder first in "
                             "extra_model_paths.yaml), then run again.") from err


def is_complete(folder: Path) -> bool:
    """A loadable Qwen3-VL / Qwen3.5 folder (the loader's own checks, which include every shard its index lists)."""
    if not folder.is_dir():
        return False
    try:
        read_family(folder)
        check_weights(folder)
        check_tokenizer_files(folder)
    except ModelLoadError:
        return False
    return True


def download_model(repo_id: str, models_dir: str | Path, revision: str | None = None,
                   input_name: str = "repo_id") -> Path:
    """Download ``repo_id`` into ``models_dir/<repo name>`` (resumable, safetensors only).

    A folder that is already complete is returned without any network access.
    """
    repo_id = check_repo_id(repo_id, input_name)
    revision = check_revision(revision)
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
    _prepare_destination(Path(models_dir), dest, input_name)
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
