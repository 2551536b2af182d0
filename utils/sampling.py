"""Logits processors and stopping hooks that ``generate`` lacks (pure torch)."""

from __future__ import annotations

from collections.abc import Callable

import torch


class PresencePenaltyLogitsProcessor:
    """Subtract ``penalty`` once from the logit of every token already *generated* in a row.

    Qwen's presets use an OpenAI-style presence penalty; ``generate`` has none. Only tokens after
    ``prompt_length`` count, so neither the prompt nor its left padding is penalised.
    """

    def __init__(self, penalty: float, prompt_length: int):
        self.penalty = float(penalty)
        self.prompt_length = int(prompt_length)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_length:]
        if self.penalty == 0 or generated.shape[1] == 0:
            return scores
        seen = torch.zeros_like(scores, dtype=torch.bool)
        seen.scatter_(1, generated.clamp(max=scores.shape[1] - 1), True)
        return scores - seen.to(scores.dtype) * self.penalty


class StepCallback:
    """A stopping criterion that calls ``fn(new_tokens)`` at every decode step.

    ``fn`` may raise (e.g. ComfyUI's interrupt) or return True to stop every row.
    """

    def __init__(self, fn: Callable[[int], bool | None], prompt_length: int):
        self.fn = fn
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores=None, **kwargs) -> torch.BoolTensor:
        stop = bool(self.fn(input_ids.shape[1] - self.prompt_length))
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)
