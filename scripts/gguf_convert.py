"""Run llama.cpp's own ``convert_hf_to_gguf.py`` with the BPE pre-tokenizer forced to ``qwen2``.

    python scripts/gguf_convert.py LLAMA_CPP_DIR MODEL_DIR [convert_hf_to_gguf.py arguments...]

The test models' tokenizer is trained here (tests/tiny_model.py), so its pre-tokenizer hash is unknown to the
converter, which then refuses the model. It uses Qwen's pre-tokenizer regex, so ``qwen2`` is the right answer:
this wrapper patches ``TextModel.get_vocab_base_pre`` from outside and never edits the vendored converter.
It also spares the converter the ``sentencepiece`` package when the model has no ``tokenizer.model``.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit(__doc__)
    source = Path(argv[0]).resolve()
    script = source / "convert_hf_to_gguf.py"
    if not script.is_file():
        raise SystemExit(f"no convert_hf_to_gguf.py in {source}")
    sys.path[:0] = [str(source), str(source / "gguf-py")]
    from conversion import base  # the vendored converter package

    base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "qwen2"
    # Qwen's converter tries a SentencePiece vocabulary first and falls back to the BPE one on
    # FileNotFoundError, but imports `sentencepiece` before looking: without that package and without a
    # tokenizer.model (Qwen ships none), go straight to the fallback the converter would take anyway.
    sentencepiece_vocab = base.TextModel._set_vocab_sentencepiece

    def set_vocab_sentencepiece(self, *args, **kwargs):
        if not (Path(self.dir_model) / "tokenizer.model").is_file():
            raise FileNotFoundError("no tokenizer.model")
        return sentencepiece_vocab(self, *args, **kwargs)

    base.TextModel._set_vocab_sentencepiece = set_vocab_sentencepiece
    sys.argv = [str(script), *argv[1:]]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
