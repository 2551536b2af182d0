"""S1 / S2: batch captioning through a served engine (a running vLLM or llama-server), our backend vs a plain client.

    scripts/with_vllm.sh .venv/bin/python benchmarks/served_caption.py            # starts a tiny vLLM
    .venv/bin/python benchmarks/served_caption.py --url http://127.0.0.1:8000/v1  # any running server
    .venv/bin/python benchmarks/served_caption.py --gguf .llama-build/tiny/qwen3vl-tiny-Q8_0.gguf \
        --mmproj .llama-build/tiny/mmproj-qwen3vl-tiny-f16.gguf --llama-server .llama-build/bin/llama-server \
        --concurrency 4 --llama-args=--no-repack --counts 16                     # a managed llama-server, 4 slots

S1 = throughput of Qwen3-VL Batch Caption's engine (``loaders.batch.caption_images`` on a Server Model) ÷
throughput of a plain client that sends the same requests (httpx in a thread pool, the same PNG bytes, the
same concurrency); target >= 0.9 (the pack adds <= 10%). S2 = throughput at concurrency 16 (llama-server: its
slot count, ``--concurrency``) ÷ concurrency 1 (our backend). Each figure is a median of interleaved rounds from ONE run on the same server and the same
16 (and 64) images at 64 new tokens (greedy; ``ignore_eos`` so every answer is 64 tokens long). Images are
already on the 32-pixel grid within the budget, so neither side resizes and both send identical pixels.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(__file__))
from _common import import_pack  # noqa: E402

SIZES = [(384, 384), (320, 448), (448, 320), (256, 512), (512, 256), (352, 352), (288, 416), (416, 288)]


def _images(n: int):
    import torch

    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (3, *SIZES[i % len(SIZES)]), dtype=torch.uint8, generator=g) for i in range(n)]


def _png(chw) -> str:
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(chw.numpy().transpose(1, 2, 0)), "RGB").save(buf, format="PNG",
                                                                                      compress_level=1)
    return base64.b64encode(buf.getvalue()).decode()


def plain_client(url: str, model: str, images, prompt: str, tokens: int, concurrency: int) -> tuple[float, int]:
    """What a user would write by hand: encode, POST (streamed, like ours), read the answer, in a thread pool."""
    import httpx

    client = httpx.Client(timeout=300, limits=httpx.Limits(max_connections=concurrency))

    def one(chw) -> int:
        try:
            return send(chw)
        except httpx.RemoteProtocolError:  # the server closed an idle keep-alive connection: send again, once
            return send(chw)

    def send(chw) -> int:
        body = {"model": model, "max_tokens": tokens, "temperature": 0.0, "top_p": 1.0, "seed": 0,
                "presence_penalty": 0.0, "ignore_eos": True, "stream": True,
                "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64," + _png(chw)}},
                    {"type": "text", "text": prompt}]}]}
        n, text = 0, []
        with client.stream("POST", url + "/chat/completions", json=body) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith("data:") or line == "data: [DONE]":
                    continue
                event = json.loads(line[5:])
                for choice in event.get("choices") or []:
                    text.append((choice.get("delta") or {}).get("content") or "")
                if event.get("usage"):
                    n = event["usage"]["completion_tokens"]
        return n

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        counts = list(pool.map(one, images))
    elapsed = time.perf_counter() - start
    client.close()
    return elapsed, sum(counts)


def ours(url: str, images, prompt: str, tokens: int, concurrency: int) -> tuple[float, int]:
    from qwen3vl_pack.loaders.backends import served
    from qwen3vl_pack.loaders.batch import caption_images, make_job
    from qwen3vl_pack.utils.presets import resolve_options

    served.forget_answers()  # no answer reuse between rounds
    bundle = served.connect(url, max_concurrency=concurrency)
    job = make_job("custom", resolve_options("Greedy", tokens, 0), prompt, batch_size=1, max_visual_tokens=1280)
    start = time.perf_counter()
    captions = caption_images(bundle, images, job)
    elapsed = time.perf_counter() - start
    assert len(captions) == len(images)
    return elapsed, len(captions)


def _check_same_work(url: str, model: str, images, prompt: str, tokens: int, width: int) -> None:
    """Both sides generate the same number of tokens for the same requests (else the ratio means nothing)."""
    from qwen3vl_pack.loaders.backends import served
    from qwen3vl_pack.loaders.tasks import run_conversations
    from qwen3vl_pack.utils.captions import build_caption_prompt
    from qwen3vl_pack.utils.messages import build_messages
    from qwen3vl_pack.utils.presets import resolve_options

    served.forget_answers()
    text = build_caption_prompt("custom", prompt)
    results = run_conversations(served.connect(url, max_concurrency=width), [build_messages(text, [im]) for im in images],
                                resolve_options("Greedy", tokens, 0), max_visual_tokens=1280)
    ours_tokens = sum(r.new_tokens for r in results)
    plain_tokens = plain_client(url, model, images, text, tokens, width)[1]
    assert ours_tokens == plain_tokens == len(images) * tokens, (ours_tokens, plain_tokens)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("QWEN3VL_VLLM_URL", ""))
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--counts", default="16,64")
    parser.add_argument("--concurrency", type=int, default=16, help="requests at once (llama-server: its slots)")
    parser.add_argument("--gguf", help="start a managed llama-server on this GGUF (with --mmproj)")
    parser.add_argument("--mmproj")
    parser.add_argument("--llama-server", default="")
    parser.add_argument("--llama-args", default="")
    args = parser.parse_args()
    import_pack()
    if args.gguf:
        from qwen3vl_pack.loaders.gguf import start_gguf

        args.url = start_gguf(args.gguf, args.mmproj or "", args.llama_server, 1024, args.concurrency, 0,
                              extra_args=args.llama_args).base_url
    if not args.url:
        parser.error("--url (or QWEN3VL_VLLM_URL) or --gguf is needed: run it under scripts/with_vllm.sh")
    from qwen3vl_pack.loaders.backends import served

    served_payload = served.request_payload

    def with_ignore_eos(*args, **kwargs):  # every answer exactly --tokens long on both sides (vLLM, testing only)
        payload, req = served_payload(*args, **kwargs)
        return {**payload, "ignore_eos": True}, req

    served.request_payload = with_ignore_eos
    model = served.connect(args.url).model
    prompt = "Write one caption for this image."
    for n in (int(c) for c in args.counts.split(",")):
        images = _images(n)
        width = args.concurrency
        _check_same_work(args.url, model, images, prompt, args.tokens, width)
        rows = {"ours": [], "plain": [], "ours1": []}
        for r in range(args.rounds):  # alternate who goes first: the server's caches favour the second sender
            pair = [("ours", ours, (args.url, images, prompt, args.tokens, width)),
                    ("plain", plain_client, (args.url, model, images, prompt, args.tokens, width))]
            for name, run, run_args in pair if r % 2 == 0 else pair[::-1]:
                rows[name].append(run(*run_args)[0])
            if n <= 16:
                rows["ours1"].append(ours(args.url, images, prompt, args.tokens, 1)[0])
        med = {k: statistics.median(v) for k, v in rows.items() if v}
        sys.stdout.write(f"{n} images x {args.tokens} tokens, {args.rounds} interleaved rounds (median s): "
                         + ", ".join(f"{k} {v:.2f}" for k, v in med.items()) + "\n")
        sys.stdout.write(f"  S1 (ours / plain client, concurrency {width}) = {med['plain'] / med['ours']:.3f}"
                         f"   per round: {[round(p / o, 3) for o, p in zip(rows['ours'], rows['plain'], strict=True)]}\n")
        if "ours1" in med:
            sys.stdout.write(f"  S2 (concurrency {width} / 1, throughput) = {med['ours1'] / med['ours']:.2f}x\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
