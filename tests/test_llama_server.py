"""The llama.cpp tier: every node through a REAL llama-server on a tiny random Qwen3-VL GGUF, both as a server
the user runs (Qwen3-VL Server Model) and as one the pack runs (Qwen3-VL GGUF (llama.cpp)), plus the six
llama-server differences (server_kinds.py) and the managed server's life (reuse, stop, restart, no orphan).

``scripts/llama_server.sh all`` builds llama-server and the tiny GGUF into .llama-build/ (the paths below, or
QWEN3VL_LLAMA_SERVER / QWEN3VL_TINY_GGUF / QWEN3VL_TINY_MMPROJ). Without them these tests are skipped, except
under CI, where that is a failure. Random weights: assertions are on shapes, counts and equalities only.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch

from qwen3vl_pack.loaders import llama_process
from qwen3vl_pack.loaders.backends import backend_for, served
from qwen3vl_pack.loaders.backends.base import VisualBudget
from qwen3vl_pack.loaders.cache import unload_all
from qwen3vl_pack.nodes.caption import Qwen3VLBatchCaption
from qwen3vl_pack.nodes.generate import Qwen3VLGenerate
from qwen3vl_pack.nodes.gguf import Qwen3VLGGUFModel
from qwen3vl_pack.nodes.grounding import Qwen3VLGrounding
from qwen3vl_pack.nodes.server import Qwen3VLServerModel
from qwen3vl_pack.nodes.task import Qwen3VLTask
from qwen3vl_pack.utils.errors import InputError
from qwen3vl_pack.utils.messages import build_messages
from qwen3vl_pack.utils.node_options import check_sampling
from qwen3vl_pack.utils.presets import resolve_options

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / ".llama-build"
BINARY = os.environ.get("QWEN3VL_LLAMA_SERVER") or str(BUILD / "bin" / "llama-server")
GGUF = os.environ.get("QWEN3VL_TINY_GGUF") or str(BUILD / "tiny" / "qwen3vl-tiny-Q8_0.gguf")
MMPROJ = os.environ.get("QWEN3VL_TINY_MMPROJ") or str(BUILD / "tiny" / "mmproj-qwen3vl-tiny-f16.gguf")
OTHER_MMPROJ = str(Path(MMPROJ).with_name("mmproj-other-width.gguf"))
ARGS = "--no-repack"  # Q8_0 crashes in the AMX repack path on some CPUs (SPEC section 11)
READY = all(Path(p).is_file() for p in (BINARY, GGUF, MMPROJ))

if not READY and os.environ.get("CI"):
    pytest.fail(f"llama-server or the tiny GGUF is missing ({BINARY}, {GGUF}, {MMPROJ}): .ci/run must run "
                "scripts/llama_server.sh all", pytrace=False)
pytestmark = pytest.mark.skipif(not READY, reason="no llama-server build (run scripts/llama_server.sh all)")


def _free_port() -> int:
    return llama_process.free_port()


def _start_plain(tmp: Path, *extra: str, ctx: int = 8192, parallel: int = 2):
    """A llama-server started by hand, as a user would (for Qwen3-VL Server Model)."""
    port = _free_port()
    log = open(tmp / f"plain-{port}.log", "w")
    proc = subprocess.Popen([BINARY, "-m", GGUF, "--mmproj", MMPROJ, "--host", "127.0.0.1", "--port", str(port),
                             "-c", str(ctx), "--parallel", str(parallel), "--jinja", "--no-webui", *ARGS.split(),
                             *extra], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url + "/v1"
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, (tmp / f"plain-{port}.log").read_text()
        time.sleep(0.2)
    proc.kill()
    pytest.fail("llama-server did not start")


def _stop_plain(proc) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    proc, url = _start_plain(tmp_path_factory.mktemp("plain"))
    yield Qwen3VLServerModel().connect(url, "", "", 120.0, 2, True)[0]
    _stop_plain(proc)


def _gguf_node(**kw):
    args = dict(model="x", mmproj="y", context=4096, parallel=2, gpu_layers=0, keep_loaded=True, model_path=GGUF,
                mmproj_path=MMPROJ, llama_server=BINARY, extra_args=ARGS)
    args.update(kw)
    return Qwen3VLGGUFModel().start(**args)[0]


@pytest.fixture(scope="module")
def managed():
    bundle = _gguf_node()
    yield bundle
    llama_process.stop_all()


@pytest.fixture(params=["server_model", "gguf_model"])
def model(request, plain, managed):
    return plain if request.param == "server_model" else managed


@pytest.fixture(autouse=True)
def _fresh():
    served.forget_answers()


def _images(n, h=192, w=256):
    return torch.rand(n, h, w, 3, generator=torch.Generator().manual_seed(n * 1000 + h + w))


def _info_number(info: str, key: str) -> int:
    return int(re.search(rf"{key}: (\d+)", info).group(1))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of this process counts as gone
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def _server_pid(guard_pid: int) -> int:
    children = Path(f"/proc/{guard_pid}/task/{guard_pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def _gone(pid: int, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


# --- both ways in: the nodes -----------------------------------------------------------------------------------
def test_detects_llama_server(plain, managed):
    assert plain.kind.name == managed.kind.name == "llama.cpp"
    assert (plain.kind.slot_context, plain.kind.slots) == (4096, 2)  # -c 8192 --parallel 2: 4096 per slot
    assert (managed.kind.slot_context, managed.kind.slots) == (4096, 2)  # context 4096 x parallel 2
    assert plain.kind.vision is True and managed.kind.log_file.endswith(".log")
    assert plain.opens_think is False and managed.opens_think is False  # read from /apply-template, not None


def test_generate_counts_what_the_server_sees(model):
    gen = Qwen3VLGenerate()
    small = gen.generate(model, "Describe.", "Greedy", 12, image=_images(1, 64, 64))
    big = gen.generate(model, "Describe.", "Greedy", 12, image=_images(1, 384, 384))
    tokens = [int(re.search(r"visual tokens per image: (\d+)", r[2]).group(1)) for r in (small, big)]
    assert tokens == [9, 144]  # 64x64 rises to llama.cpp's floor of 8 tokens (3x3 = 9), 384x384 is 12x12
    # the server's own prompt count moves by exactly the visual tokens the pack reported
    assert _info_number(big[2], "prompt tokens") - _info_number(small[2], "prompt tokens") == 144 - 9
    assert 1 <= _info_number(small[2], "generated tokens") <= 12
    served.forget_answers()
    assert gen.generate(model, "Describe.", "Greedy", 12, image=_images(1, 64, 64))[0] == small[0]  # greedy


def test_chat_second_turn(model):
    gen = Qwen3VLGenerate()
    _, _, _, chat = gen.generate(model, "What is this?", "Greedy", 8, image=_images(1))
    _, _, info, chat2 = gen.generate(model, "And the colours?", "Greedy", 8, chat=chat)
    assert chat2.turns == 2 and _info_number(info, "prompt tokens") > 0


def test_grounding(model):
    bboxes, mask, preview, json_text, text = Qwen3VLGrounding().ground(model, _images(2, 256, 320), "cat", "boxes",
                                                                       24, "Greedy")
    assert len(bboxes) == 2 and tuple(mask.shape) == (2, 256, 320) and tuple(preview.shape) == (2, 256, 320, 3)
    assert "=== image 1 ===" in text and "=== image 2 ===" in text


def _task(model, task, image):
    node, kwargs = Qwen3VLTask(), {}
    spec = node.INPUT_TYPES()["required"]
    for name, (kind, *opts) in spec.items():  # widget defaults, so the call survives a Task node rework
        if name != "model":
            kwargs[name] = opts[0].get("default", kind[0] if isinstance(kind, list) else None) if opts else None
    kwargs.update(task=task, target="cat", max_new_tokens=8, preset="Greedy")
    return node.run(model, image=image, **kwargs)


@pytest.mark.parametrize("task", ["ocr", "points"])
def test_task(model, task):
    out = _task(model, task, _images(1, 128, 160))
    assert isinstance(out, tuple) and len(out) == len(Qwen3VLTask.RETURN_TYPES)


def test_batch_caption_in_order_and_equal_to_single_requests(model):
    images = [_images(1, 96 + 32 * i, 128) for i in range(4)]
    node = Qwen3VLBatchCaption()
    captions, _ = node.caption([model], images, ["custom"], [8], ["Greedy"], [10], [""], [""],
                              custom_prompt=["Caption this image."])
    assert len(captions) == 4
    served.forget_answers()
    singles = [node.caption([model], [img], ["custom"], [1], ["Greedy"], [10], [""], [""],
                            custom_prompt=["Caption this image."])[0][0] for img in images]
    assert captions == singles


# --- the six differences ---------------------------------------------------------------------------------------
def test_thinking_prompt_detected_and_a_cut_off_draft_is_not_an_answer(tmp_path):
    from qwen3vl_pack.tests.tiny_model import CHAT_TEMPLATE_FILE, thinking_chat_template

    template = tmp_path / "thinking.jinja"
    template.write_text(thinking_chat_template(CHAT_TEMPLATE_FILE.read_text(encoding="utf-8")), encoding="utf-8")
    proc, url = _start_plain(tmp_path, "--chat-template-file", str(template), "--reasoning-format", "none",
                             parallel=1, ctx=4096)
    try:
        bundle = Qwen3VLServerModel().connect(url, "", "", 120.0, 1, True)[0]
        assert bundle.opens_think is True  # llama-server's /tokenize would have said nothing
        conversation = build_messages("Describe.", [_images(1, 64, 64)[0].permute(2, 0, 1).mul(255).byte()])
        (result,) = backend_for(bundle).generate([conversation], resolve_options("Greedy", 6, 0), VisualBudget(0, 64))
        assert not result.raw_text.startswith("<think>")  # --reasoning-format none: the server split nothing
        if "</think>" not in result.raw_text:  # random weights: the draft is cut off while thinking
            assert result.answer_cut_off and result.text == "" and result.thinking
        else:
            assert not result.answer_cut_off and result.thinking == result.raw_text.split("</think>")[0].strip()
    finally:
        _stop_plain(proc)


def test_a_llama_server_without_mmproj_is_named(tmp_path):
    port = _free_port()
    proc = subprocess.Popen([BINARY, "-m", GGUF, "--host", "127.0.0.1", "--port", str(port), "-c", "1024",
                             "--no-webui", *ARGS.split()], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        with pytest.raises(InputError, match="^base_url: .*started without --mmproj"):
            Qwen3VLServerModel().connect(f"http://127.0.0.1:{port}/v1", "", "", 30.0, 1, True)
    finally:
        _stop_plain(proc)


def test_max_new_tokens_beyond_the_slot_is_refused(model):
    with pytest.raises(InputError) as err:
        Qwen3VLGenerate().generate(model, "Describe.", "Greedy", 8000, image=_images(1, 64, 64))
    assert str(err.value).startswith("max_new_tokens:") and "4096 tokens of one llama-server slot" in str(err.value)
    assert Qwen3VLGenerate().generate(model, "Describe.", "Greedy", 4, image=_images(1, 64, 64))[0] is not None


def test_slot_context_errors_name_the_context(model):
    with pytest.raises(InputError) as err:  # 2 x 2500 visual tokens cannot fit a 4096-token slot
        Qwen3VLGenerate().generate(model, "Describe.", "Greedy", 8, image=_images(2, 1600, 1600),
                                   max_visual_tokens=2500)
    assert str(err.value).startswith("max_visual_tokens:") and "2 --parallel slots" in str(err.value)
    with pytest.raises(InputError) as err:  # a prompt longer than the slot: the server's own refusal, re-told
        Qwen3VLGenerate().generate(model, "cat " * 5000, "Greedy", 8)
    text = str(err.value)
    if model.kind.log_file:
        assert text.startswith("context:") and model.kind.log_file in text
    else:
        assert text.startswith("max_visual_tokens:") and "-c" in text
    assert "4096" in text


def test_repetition_penalty_reaches_llama_server_as_repeat_penalty(model):
    Qwen3VLGenerate().generate(model, "Describe.", "Greedy", 4, image=_images(1, 64, 64),
                               sampling=check_sampling(repetition_penalty=1.37))
    slots = httpx.get(model.client().base_url.removesuffix("/v1") + "/slots", timeout=30).json()
    assert any(abs(s.get("params", {}).get("repeat_penalty", 0) - 1.37) < 1e-6 for s in slots)


def test_video_is_refused_naming_video(model):
    with pytest.raises(InputError, match="^video: llama-server takes no video"):
        Qwen3VLGenerate().generate(model, "Describe.", "Greedy", 4, video=_images(4, 64, 64), video_fps=4.0)


# --- the managed server's life ---------------------------------------------------------------------------------
def test_one_server_per_settings_reused(managed):
    again = _gguf_node()
    assert again.base_url == managed.base_url
    other = _gguf_node(parallel=1)
    try:
        assert other.base_url != managed.base_url and other.kind.slots == 1
    finally:
        llama_process.stop(other.settings)
    assert Qwen3VLGenerate().generate(managed, "Describe.", "Greedy", 4)[0] is not None


def test_keep_loaded_off_unload_and_a_dead_server(managed):
    bundle = _gguf_node(keep_loaded=False, context=2048, parallel=1)
    guard = llama_process.running(bundle.settings).pid
    Qwen3VLGenerate().generate(bundle, "Describe.", "Greedy", 4)
    assert llama_process.running(bundle.settings) is None and _gone(guard)  # stopped after the run
    Qwen3VLGenerate().generate(bundle, "Describe.", "Greedy", 4)  # started again for the next run
    server = llama_process.running(managed.settings)
    pid = _server_pid(server.pid)
    os.kill(pid, signal.SIGKILL)  # the server dies between runs: the next run starts it again
    assert _gone(server.pid)
    assert Qwen3VLGenerate().generate(managed, "Describe.", "Greedy", 4)[0] is not None
    assert unload_all() >= 1  # Unload Models / ComfyUI's /free
    assert llama_process._SERVERS == {}
    assert Qwen3VLGenerate().generate(managed, "Describe.", "Greedy", 4)[0] is not None


def test_wrong_mmproj_and_not_gguf_with_nothing_left_running(tmp_path):
    before = dict(llama_process._SERVERS)
    if Path(OTHER_MMPROJ).is_file():
        with pytest.raises(InputError, match="^mmproj_path: .*belongs to another model"):
            _gguf_node(mmproj_path=OTHER_MMPROJ)
    (tmp_path / "model.gguf").write_bytes(b"not a gguf at all")
    with pytest.raises(InputError, match="^model_path: .*not a GGUF"):
        _gguf_node(model_path=str(tmp_path / "model.gguf"))
    assert llama_process._SERVERS == before


KILLED_PARENT = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("qwen3vl_pack", {init!r}, submodule_search_locations=[{root!r}])
sys.modules["qwen3vl_pack"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sys.modules["qwen3vl_pack"])
from qwen3vl_pack.loaders.gguf import start_gguf
from qwen3vl_pack.loaders import llama_process
bundle = start_gguf({gguf!r}, {mmproj!r}, {binary!r}, 2048, 1, 0, extra_args={args!r})
print(llama_process.running(bundle.settings).pid, flush=True)
time.sleep(600)
"""


def test_killed_parent_leaves_no_llama_server(tmp_path):
    """A ComfyUI (here: any Python process running the pack) killed with SIGKILL: no atexit runs, and still
    no llama-server stays behind."""
    code = KILLED_PARENT.format(init=str(ROOT / "__init__.py"), root=str(ROOT), gguf=GGUF, mmproj=MMPROJ,
                                binary=BINARY, args=ARGS)
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
    line = parent.stdout.readline()
    assert line.strip().isdigit(), f"the parent did not start a server (exit {parent.poll()})"
    guard = int(line)
    server = _server_pid(guard)
    assert _alive(server)
    parent.kill()
    parent.wait()
    assert _gone(server), f"llama-server {server} survived its parent"


def _servers_with(marker: str) -> list[int]:
    """Running llama-server processes whose command line holds ``marker``."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"llama-server") and marker.encode() in cmd and _alive(int(proc.name)):
                found.append(int(proc.name))
    return found


def test_cli_ask_and_caption_with_gguf_and_with_server(plain, tmp_path):
    from PIL import Image

    folder = tmp_path / "set"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (96 + 32 * i, 96), (60 * i, 90, 200)).save(folder / f"img{i}.png")
    gguf_args = ["--gguf", GGUF, "--mmproj", MMPROJ, "--llama-server", BINARY, f"--llama-args={ARGS}",
                 "--ctx", "1536", "--gpu-layers", "0"]
    cli = [sys.executable, str(ROOT / "cli.py")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    ask = subprocess.run([*cli, "ask", *gguf_args, "--image", str(folder / "img0.png"), "--preset", "Greedy",
                          "--max-new-tokens", "6", "--info", "Describe."], capture_output=True, text=True, env=env,
                         timeout=600)
    assert ask.returncode == 0, ask.stderr
    assert "prompt tokens:" in ask.stdout and "visual tokens per image: 9" in ask.stdout
    cap = subprocess.run([*cli, "caption", str(folder), *gguf_args, "--parallel", "2", "--max-new-tokens", "6",
                          "--no-progress"], capture_output=True, text=True, env=env, timeout=600)
    assert cap.returncode == 0, cap.stderr
    assert sorted(p.name for p in folder.glob("*.txt")) == [f"img{i}.txt" for i in range(3)]
    assert _servers_with("1536") == [] and _servers_with("3072") == []  # the CLI's servers ended with it
    too_long = subprocess.run([*cli, "ask", *gguf_args, "--max-new-tokens", "5000", "Describe."],
                              capture_output=True, text=True, env=env, timeout=600)
    assert too_long.returncode == 2 and "--max-new-tokens: 5000 new tokens" in too_long.stderr
    assert "--ctx" in too_long.stderr
    for p in folder.glob("*.txt"):
        p.unlink()
    served_run = subprocess.run([*cli, "caption", str(folder), "--server", plain.base_url, "--concurrency", "2",
                                 "--max-new-tokens", "6", "--no-progress"], capture_output=True, text=True, env=env,
                                timeout=600)
    assert served_run.returncode == 0, served_run.stderr
    assert len(list(folder.glob("*.txt"))) == 3
