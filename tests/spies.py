"""Test helpers that watch the real code path without replacing it."""

from __future__ import annotations


def spy_prepare_inputs(monkeypatch) -> list:
    """Record the processor output of every generation (the real function still runs)."""
    from qwen3vl_pack.loaders import engine

    calls = []
    real = engine.prepare_inputs

    def spy(*args, **kwargs):
        inputs, counts = real(*args, **kwargs)
        calls.append(inputs)
        return inputs, counts

    monkeypatch.setattr(engine, "prepare_inputs", spy)
    return calls
