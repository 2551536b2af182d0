"""P1: Qwen3VL_Generate (IMAGE tensor in, warm cache) / a plain transformers script, same tiny model,
same image, greedy 32 tokens, interleaved in one run. P3: a second loader call (cache hit).

    python benchmarks/p1_p3_generate.py [--rounds 20]

Targets: P1 <= 1.05, P3 <= 1 ms. Absolute times on shared CPUs mean little; ratios are measured
interleaved so both sides see the same machine load.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from _common import import_pack, tiny_model


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--tokens", type=int, default=32)
    args = ap.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    import_pack()
    from qwen3vl_pack.nodes.generate import Qwen3VLGenerate
    from qwen3vl_pack.nodes.loader import Qwen3VLModelLoader

    torch.set_num_threads(max(1, torch.get_num_threads()))
    path = tiny_model("dense")
    loader = Qwen3VLModelLoader()
    kwargs = dict(model="", dtype="fp32", attention="sdpa", quantization="none", device="cpu", keep_loaded=True,
                  model_path=str(path))
    (bundle,) = loader.load(**kwargs)
    model, processor = bundle.model, bundle.processor

    rng = np.random.default_rng(0)
    pil = Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    image = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0)[None]
    prompt = "Describe this image."
    node = Qwen3VLGenerate()

    def run_node():
        return node.generate(bundle, prompt, "Greedy", args.tokens, image=image, max_visual_tokens=0)[0]

    def run_plain():
        messages = [{"role": "user", "content": [{"type": "image", "image": pil}, {"type": "text", "text": prompt}]}]
        inputs = processor.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                               return_dict=True, return_tensors="pt").to(model.device)
        out = model.generate(**inputs, max_new_tokens=args.tokens, do_sample=False)
        return processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True,
                                      clean_up_tokenization_spaces=False)[0]

    assert run_node() == run_plain().strip(), "node and plain script must produce the same text"
    node_t, plain_t = [], []
    for i in range(args.rounds):
        order = (run_node, run_plain) if i % 2 == 0 else (run_plain, run_node)
        for fn in order:
            t = time.perf_counter()
            fn()
            (node_t if fn is run_node else plain_t).append(time.perf_counter() - t)
    p1 = statistics.median(node_t) / statistics.median(plain_t)

    hits = []
    for _ in range(200):
        t = time.perf_counter()
        (again,) = loader.load(**kwargs)
        hits.append(time.perf_counter() - t)
        assert again is bundle
    p3 = statistics.median(hits) * 1000

    sys.stdout.write(f"rounds={args.rounds} tokens={args.tokens}\n")
    sys.stdout.write(f"node median {statistics.median(node_t) * 1000:.1f} ms, plain median "
                     f"{statistics.median(plain_t) * 1000:.1f} ms\n")
    sys.stdout.write(f"P1 node/plain = {p1:.3f} (target <= 1.05) {'OK' if p1 <= 1.05 else 'MISSED'}\n")
    sys.stdout.write(f"P3 cache-hit loader call = {p3:.3f} ms median, {max(hits) * 1000:.3f} ms max "
                     f"(target <= 1 ms) {'OK' if p3 <= 1 else 'MISSED'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
