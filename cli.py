"""Headless command line for the pack: the same loaders/ and utils/ as the ComfyUI nodes.

    python cli.py ask --model /path/to/Qwen3-VL-2B-Instruct --image photo.jpg "Describe this image."
    python cli.py ask --image assets/sample.png "Describe this image."   # tiny random model
    python cli.py caption /path/to/images --model /path/to/Qwen3-VL-2B-Instruct --prefix "ohwx"
    python cli.py ask --server http://127.0.0.1:8000/v1 --image photo.jpg "Describe this image."
    python cli.py caption /path/to/images --server http://127.0.0.1:8000/v1 --concurrency 16
    python cli.py ask --gguf Qwen3-VL-8B-Instruct-Q4_K_M.gguf --mmproj mmproj-Qwen3-VL-8B-Instruct-F16.gguf \
        --image photo.jpg "Describe this image."      # starts and stops llama-server itself

Without ``--model`` it builds a tiny random-weight Qwen3-VL (as the tests do) and says so:
its answers are random text, useful only to check that everything runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # Run as a script: make the pack folder importable as a package so relative imports work,
    # without importing ComfyUI-facing code.
    import importlib.util
    import runpy

    _root = Path(__file__).resolve().parent
    _spec = importlib.util.spec_from_file_location("qwen3vl_pack", _root / "__init__.py",
                                                   submodule_search_locations=[str(_root)])
    sys.modules["qwen3vl_pack"] = importlib.util.module_from_spec(_spec)
    sys.exit(runpy.run_module("qwen3vl_pack.cli", run_name="qwen3vl_pack.cli")["main"]())

logger = logging.getLogger(__name__)
TINY_WARNING = ("No --model given: using a tiny model with RANDOM weights built on the fly. Its answers are "
                "random text; this only shows that the pipeline runs. Pass --model DIR for a real Qwen3-VL.")


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def tiny_model_dir(family: str = "dense") -> Path:
    """Build (once per temp dir) the tiny random model used when no --model is given."""
    import transformers

    from .tests.tiny_model import build_tiny_model

    path = Path(tempfile.gettempdir()) / f"qwen3vl-pack-tiny-{family}-tf{transformers.__version__}"
    if not (path / "config.json").is_file() or not any(path.glob("*.safetensors")):
        build_tiny_model(path, family)
    return path


def _add_model_args(p: argparse.ArgumentParser) -> None:
    from .loaders.options import ATTENTIONS, DEVICES, DTYPES, QUANTIZATIONS

    p.add_argument("--model", help="Qwen3-VL / Qwen3.5 model folder (default: a tiny random model, for smoke tests)")
    p.add_argument("--dtype", choices=DTYPES, default="auto")
    p.add_argument("--attention", choices=ATTENTIONS, default="auto")
    p.add_argument("--quantization", choices=QUANTIZATIONS, default="none")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--lora", action="append", default=[], metavar="PATH[:STRENGTH]",
                   help="a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors), strength "
                        "0..2 (default 1); repeat to stack adapters")
    served = p.add_argument_group("served engine (instead of --model)")
    served.add_argument("--server", metavar="URL", help="an OpenAI-compatible server's API address, e.g. "
                        "http://127.0.0.1:8000/v1 (vLLM, SGLang, llama-server, Ollama, LM Studio)")
    served.add_argument("--server-model", default="", metavar="NAME", help="served model name (default: the first)")
    served.add_argument("--api-key-env", default="", metavar="VAR", help="name of the environment variable "
                        "holding the server's API key: QWEN3VL_API_KEY or QWEN3VL_API_KEY_<SUFFIX> only")
    served.add_argument("--timeout", type=float, default=120.0, metavar="S",
                        help="longest wait for the server's next bytes, in seconds")
    served.add_argument("--concurrency", type=int, default=8, metavar="N", help="requests in flight at once")
    gguf = p.add_argument_group("GGUF through llama.cpp (instead of --model): starts and stops a llama-server")
    gguf.add_argument("--gguf", metavar="FILE", help="a GGUF Qwen3-VL / Qwen3.5 language model file")
    gguf.add_argument("--mmproj", metavar="FILE", help="its vision projector (mmproj-*.gguf)")
    gguf.add_argument("--llama-server", default="", metavar="PATH", help="the llama-server program (default: "
                      "$QWEN3VL_LLAMA_SERVER, else llama-server on PATH)")
    gguf.add_argument("--ctx", type=int, default=8192, metavar="N", help="tokens per request (per slot); the server "
                      "gets -c N x --parallel")
    gguf.add_argument("--parallel", type=int, default=1, metavar="N", help="requests at once (llama-server slots)")
    gguf.add_argument("--gpu-layers", type=int, default=999, metavar="N", help="layers on the GPU (-ngl)")
    gguf.add_argument("--llama-args", default="", metavar="ARGS", help="more llama-server flags, e.g. --no-repack")


def _add_generation_args(p: argparse.ArgumentParser, preset: str = "VL", thinking: str = "auto") -> None:
    from .utils.presets import PRESET_NAMES, THINKING_MODES

    p.add_argument("--preset", choices=PRESET_NAMES, default=preset)
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-p", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=20)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--presence-penalty", type=float, default=1.5)
    p.add_argument("--max-visual-tokens", type=int, default=1280, help="per image, 1 token = 32x32 pixels")
    p.add_argument("--min-visual-tokens", type=int, default=0)
    p.add_argument("--thinking", choices=THINKING_MODES, default=thinking,
                   help="Qwen3.5's thinking switch: auto = the model's own default, on, off (no effect on Qwen3-VL)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cli.py", description="Qwen3-VL / Qwen3.5 from the command line.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    ask = sub.add_parser("ask", help="answer a prompt about zero or more images")
    ask.add_argument("prompt", help="the question or instruction")
    ask.add_argument("--image", action="append", default=[], help="an image file (repeat for several)")
    ask.add_argument("--system", default="", help="system prompt")
    ask.add_argument("--info", action="store_true", help="also print the debugging report")
    _add_model_args(ask)
    _add_generation_args(ask)
    from .cli_caption import add_caption_parser

    add_caption_parser(sub, _add_model_args, _add_generation_args)
    layout = sub.add_parser("lora-layout", help="copy a LoRA adapter with its keys in the vision-language wrapper "
                            "layout that vLLM maps (an adapter trained on the text-only layout is otherwise served "
                            "as a silent no-op)")
    layout.add_argument("adapter", help="the adapter folder (adapter_config.json + adapter_model.safetensors)")
    layout.add_argument("output", help="a new folder for the copy")
    return parser


def cmd_lora_layout(args) -> int:
    from .loaders.lora import to_wrapper_layout

    count = to_wrapper_layout(args.adapter, args.output)
    _out(f"{count} modules written to {args.output} in the wrapper layout (model.language_model. / model.visual.)")
    return 0


def load_from_args(args):
    from .loaders.cache import load_model
    from .loaders.lora import with_adapter

    if getattr(args, "gguf", None) or getattr(args, "mmproj", None):
        from .loaders.gguf import start_gguf

        if args.server or args.model:
            logger.warning("--server / --model are ignored: --gguf answers instead.")
        return start_gguf(args.gguf or "", args.mmproj or "", args.llama_server, args.ctx, args.parallel,
                          args.gpu_layers, True, args.timeout, 0, args.llama_args, names=GGUF_FLAGS)
    if args.server:
        from .loaders.backends.served import connect

        if args.model:
            logger.warning("--model is ignored: --server answers instead.")
        if args.lora:
            from .utils.errors import InputError

            raise InputError("--lora", "applies to a local model; a server applies its own adapters.",
                             "Start vLLM with --enable-lora --lora-modules NAME=PATH and pass --server-model NAME.")
        return connect(args.server, args.server_model, args.api_key_env, args.timeout, args.concurrency)
    loras = [parse_lora_arg(spec) for spec in args.lora]  # a bad spec fails before the model loads
    model = args.model
    if not model:
        logger.warning(TINY_WARNING)
        model = str(tiny_model_dir())
    bundle = load_model(str(Path(model).expanduser().resolve()), [], dtype=args.dtype, attention=args.attention,
                        quantization=args.quantization, device=args.device, input_name="--model")
    for path, dirs, strength in loras:
        bundle = with_adapter(bundle, path, dirs, strength, input_name="--lora")
    return bundle


def parse_lora_arg(spec: str) -> tuple[str, list[str], float]:
    """``PATH[:STRENGTH]`` as (absolute path, search dirs, strength); a colon that is part of the path (``C:\\x``)
    stays in it."""
    from .utils.errors import InputError

    path, strength = spec, 1.0
    head, sep, tail = spec.rpartition(":")
    if sep and head and not tail.startswith(("\\", "/")):
        try:
            path, strength = head, float(tail)
        except ValueError:
            raise InputError("--lora", f"{spec!r}: the strength after the last ':' must be a number, got {tail!r}.",
                             "Write --lora PATH or --lora PATH:0.8.") from None
    return str(Path(path).expanduser().resolve()), [], strength


def options_from_args(args):
    from .utils.presets import resolve_options

    return resolve_options(args.preset, args.max_new_tokens, args.seed, args.temperature, args.top_p,
                           args.top_k, args.repetition_penalty, args.presence_penalty,
                           getattr(args, "thinking", "auto"))


def read_image(path: str):
    """An image file as the nodes' folder loader reads it (EXIF, CMYK/16-bit/alpha -> RGB on white)."""
    from .utils.errors import InputError
    from .utils.image_files import READ_ERRORS, read_error_text, read_rgb
    from .utils.images import pil_to_chw

    try:
        image = read_rgb(path)
    except READ_ERRORS as err:
        raise InputError("--image", f"cannot read {path!r}: {read_error_text(err)}.",
                         "Give an existing image file (PNG, JPEG, WebP, ...).") from err
    return pil_to_chw(image, "--image")


def cmd_ask(args) -> int:
    from .loaders.lora import describe
    from .loaders.tasks import ask
    from .utils.text import format_info

    options = options_from_args(args)
    images = [read_image(p) for p in args.image]
    bundle = load_from_args(args)
    result = ask(bundle, args.prompt, options, images, args.system, args.min_visual_tokens, args.max_visual_tokens)
    if result.thinking:
        _out(f"[thinking]\n{result.thinking}\n[answer]")
    _out(result.text)
    if args.info:
        _out(format_info(result, options, describe(bundle)))
    return 0


def cmd_caption(args) -> int:
    from .cli_caption import cmd_caption as run

    return run(args, load_from_args, options_from_args, _out)


def main(argv: list[str] | None = None) -> int:
    from .utils.errors import Qwen3VLError

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return {"ask": cmd_ask, "caption": cmd_caption, "lora-layout": cmd_lora_layout}[args.command](args)
    except Qwen3VLError as err:
        logger.error("%s", cli_message(err, parser, args.command))
        return 2
    finally:
        if getattr(args, "gguf", None) or getattr(args, "mmproj", None):
            from .loaders.llama_process import stop_all

            stop_all()  # the llama-server started for --gguf ends with the command


# node inputs of Qwen3-VL Server Model / GGUF (llama.cpp) -> the CLI's flags
SERVED_FLAGS = {"base_url": "--server", "timeout_s": "--timeout", "max_concurrency": "--concurrency"}
GGUF_FLAGS = {"model": "--gguf", "mmproj": "--mmproj", "llama_server": "--llama-server", "context": "--ctx",
              "parallel": "--parallel", "gpu_layers": "--gpu-layers"}


def cli_message(err: Exception, parser: argparse.ArgumentParser, command: str) -> str:
    """An error from the shared engine names node inputs (``max_new_tokens: ...``); say the option instead."""
    text, name = str(err), getattr(err, "input_name", "")
    flag = name if name.startswith("--") else SERVED_FLAGS.get(name) or "--" + name.replace("_", "-")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    options = {opt for action in sub._actions for opt in action.option_strings}
    if name and flag in options and text.startswith(name + ":"):
        return flag + text[len(name):]
    return text
