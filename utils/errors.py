"""Errors a user can act on: each names the input at fault and says what to do."""

from __future__ import annotations


class Qwen3VLError(Exception):
    """Base class for every error this pack raises on purpose."""


class _NamedInputError(Qwen3VLError):
    """An error about one input: ``str(err)`` reads ``"<input>: <problem> <what to do>"``, so ComfyUI's error
    panel (and the CLI) tells the user which widget, socket or option to fix."""

    def __init__(self, input_name: str, problem: str, advice: str = ""):
        self.input_name = input_name
        self.problem = problem
        self.advice = advice
        text = f"{input_name}: {problem}"
        if advice:
            text += f" {advice}"
        super().__init__(text)


class InputError(_NamedInputError, ValueError):
    """A node input (or CLI option) has a value the pack cannot use."""


class ModelLoadError(_NamedInputError, RuntimeError):
    """A model folder cannot be loaded (missing files, wrong type, unsafe weights...)."""


class GenerationOOMError(Qwen3VLError, RuntimeError):
    """The device ran out of memory during generation."""
