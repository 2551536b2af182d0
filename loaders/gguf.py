"""GGUF through llama.cpp: check the files and the binary, start (or reuse) a managed llama-server, and hand
the nodes a served bundle. Used by Qwen3-VL GGUF (llama.cpp) and ``cli.py --gguf``."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..utils.errors import InputError
from ..utils.gguf_meta import GGUFError, is_projector, projector_width, read_metadata, text_width
from . import llama_process
from .backends.openai_client import OpenAIClient
from .backends.served import ServerBundle, check_settings, connect, pooled_client
from .llama_process import LlamaSettings

logger = logging.getLogger(__name__)
BINARY_ENV = "QWEN3VL_LLAMA_SERVER"
RELEASES = "https://github.com/ggml-org/llama.cpp/releases"
BINARY_NAMES = ("llama-server", "llama-server.exe")
MIN_CTX, MAX_CTX = 512, 1_048_576
MAX_PARALLEL = 64


def find_binary(given: str = "", input_name: str = "llama_server") -> str:
    """The llama-server to run: ``given`` (a file or the folder holding it), else $QWEN3VL_LLAMA_SERVER, else PATH."""
    source, value = input_name, (given or "").strip()
    if not value and os.environ.get(BINARY_ENV, "").strip():
        source, value = BINARY_ENV, os.environ[BINARY_ENV].strip()
    if not value:
        found = shutil.which("llama-server")
        if found:
            return found
        raise InputError(input_name, f"no llama-server found: this input is empty, {BINARY_ENV} is not set and "
                         "llama-server is not on PATH.", f"Download a prebuilt llama.cpp for your GPU (CUDA, Vulkan, "
                         f"Metal or CPU) from {RELEASES}, unpack it, and give the path of its llama-server here "
                         f"(or set {BINARY_ENV} before starting ComfyUI).")
    path = Path(value).expanduser()
    if path.is_dir():
        inside = [path / n for n in BINARY_NAMES if (path / n).is_file()]
        if not inside:
            raise InputError(input_name, f"the folder {path} (from {source}) holds no llama-server.",
                             f"Give the llama-server file of a llama.cpp release ({RELEASES}).")
        path = inside[0]
    if not path.is_file():
        raise InputError(input_name, f"{path} (from {source}) does not exist.",
                         f"Give the path of llama-server from a llama.cpp release ({RELEASES}).")
    if not os.access(path, os.X_OK):
        raise InputError(input_name, f"{path} (from {source}) is not executable.",
                         f"Make it executable (chmod +x {path}) or give the llama-server of a release ({RELEASES}).")
    return str(path.resolve())


def check_files(model: str, mmproj: str, model_input: str = "model", mmproj_input: str = "mmproj") -> tuple[str, str]:
    """Both files exist, are GGUF, are a language model and its vision projector, and fit together."""
    paths, metas = [], []
    for value, name, want_projector in ((model, model_input, False), (mmproj, mmproj_input, True)):
        path = Path((value or "").strip()).expanduser()
        if not str(value or "").strip():
            raise InputError(name, "is empty.", "Choose a .gguf file (models/LLM) or give its path.")
        if not path.is_file():
            raise InputError(name, f"{path} does not exist.", "Choose a .gguf file in models/LLM or give a full path.")
        try:
            meta = read_metadata(path)
        except (GGUFError, OSError) as err:
            raise InputError(name, f"{path} cannot be used: {err}.", "Give a .gguf file (e.g. "
                             "Qwen3-VL-8B-Instruct-Q4_K_M.gguf and its mmproj-*.gguf).") from err
        if is_projector(meta) != want_projector:
            if want_projector:
                raise InputError(name, f"{path.name} is a language model, not a vision projector.",
                                 "Choose the mmproj-*.gguf file that comes with the model.")
            raise InputError(name, f"{path.name} is a vision projector (mmproj), not the language model.",
                             "Choose the model GGUF here and this file as mmproj.")
        paths.append(str(path.resolve()))
        metas.append(meta)
    width, proj = text_width(metas[0]), projector_width(metas[1])
    if width and proj and width != proj:
        raise InputError(mmproj_input, f"{Path(paths[1]).name} projects images to width {proj}, but "
                         f"{Path(paths[0]).name} has width {width}: it belongs to another model.",
                         "Choose the mmproj file made for this model (same repository and size).")
    return paths[0], paths[1]


def _stamp(*paths: str) -> tuple:
    return tuple((os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths)


@dataclass(frozen=True)
class ManagedBundle(ServerBundle):
    """A served bundle whose llama-server this pack runs: every run makes sure it is up (restarting it after a
    stop), and keep_loaded off stops it after the run."""

    settings: LlamaSettings | None = field(default=None, compare=False)
    keep_loaded: bool = True

    def server(self) -> llama_process.ManagedServer:
        assert self.settings is not None
        return llama_process.ensure(self.settings, prefer=_port_of(self.base_url))

    def client(self) -> OpenAIClient:
        """One client per running server process: a restarted llama-server (new pid) gets a new one and the old
        one is closed."""
        server = self.server()
        return pooled_client(
            ("llama-server", server.url, server.pid, self.api_key_env, self.timeout_s, self.max_concurrency),
            lambda: OpenAIClient(server.url, self.api_key_env, self.timeout_s, max_connections=self.max_concurrency),
            stale=lambda key: key[:2] == ("llama-server", server.url))

    def after_run(self) -> None:
        if not self.keep_loaded and self.settings is not None:
            llama_process.stop(self.settings)


def _port_of(url: str) -> int:
    try:
        return int(url.rsplit(":", 1)[1].split("/", 1)[0])
    except (IndexError, ValueError):
        return 0


def start_gguf(model: str, mmproj: str, llama_server: str = "", ctx_per_slot: int = 8192, parallel: int = 1,
               gpu_layers: int = 999, keep_loaded: bool = True, timeout_s: float = 120.0, port: int = 0,
               extra_args: str = "", start_timeout_s: float = 300.0,
               names: dict[str, str] | None = None) -> ManagedBundle:
    """Check everything, start (or reuse) the llama-server for these settings, return its bundle.

    ``names`` maps the parameters to the caller's input names (the CLI's flags)."""
    n = {"model": "model", "mmproj": "mmproj", "llama_server": "llama_server", "context": "context",
         "parallel": "parallel", **(names or {})}
    for value, key, low, high in ((ctx_per_slot, "context", MIN_CTX, MAX_CTX), (parallel, "parallel", 1, MAX_PARALLEL),
                                  (gpu_layers, "gpu_layers", -1, 100_000)):
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise InputError(n.get(key, key), f"must be a whole number from {low} to {high}, got {value!r}.",
                             "context: tokens per request (images + prompt + answer); parallel: requests at once.")
    check_settings(timeout_s, parallel)
    binary = find_binary(llama_server, n["llama_server"])
    model_path, mmproj_path = check_files(model, mmproj, n["model"], n["mmproj"])
    settings = LlamaSettings(binary, model_path, mmproj_path, int(ctx_per_slot), int(parallel), int(gpu_layers),
                             tuple(extra_args.split()), _stamp(model_path, mmproj_path), float(start_timeout_s))
    server = llama_process.ensure(settings, port)
    try:
        plain = connect(server.url, settings.alias, "", timeout_s, parallel, True)
    except Exception:
        llama_process.stop(settings)
        raise
    kind = replace(plain.kind, log_file=str(server.log_file), context_input=n["context"])
    logger.info("GGUF %s + %s on llama-server %s (slot context %s, %d slot(s))", Path(model_path).name,
                Path(mmproj_path).name, server.url, kind.slot_context, parallel)
    return ManagedBundle(base_url=plain.base_url, model=plain.model, timeout_s=float(timeout_s),
                         max_concurrency=int(parallel), keep_alive=True, opens_think=plain.opens_think, kind=kind,
                         settings=settings, keep_loaded=bool(keep_loaded))


def list_gguf(dirs: list[str]) -> tuple[list[str], list[str]]:
    """``.gguf`` files under ``dirs`` (relative names): (language models, vision projectors by file name)."""
    models, projectors = [], []
    for base in dirs:
        root = Path(base)
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*.gguf")):
            rel = path.relative_to(root).as_posix()
            (projectors if "mmproj" in path.name.lower() else models).append(rel)
    return sorted(set(models)), sorted(set(projectors))


def resolve_listed(name: str, dirs: list[str], input_name: str) -> str:
    """A listed relative name -> its full path (first folder that has it)."""
    for base in dirs:
        path = Path(base) / name
        if path.is_file():
            return str(path)
    raise InputError(input_name, f"{name!r} is not in models/LLM (or the extra_model_paths.yaml LLM folders).",
                     "Put the .gguf there and refresh, or give its full path in the *_path input.")
