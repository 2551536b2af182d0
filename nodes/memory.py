"""Qwen3VL_Unload: free every cached Qwen3-VL model at a chosen point of a graph."""

from __future__ import annotations

from ..loaders.cache import unload_all


class AnyType(str):
    """A type string that matches every socket type (ComfyUI compares types with !=)."""

    def __ne__(self, other):
        return False

    __hash__ = str.__hash__


ANY = AnyType("*")


class Qwen3VLUnload:
    DESCRIPTION = ("Frees every Qwen3-VL model this pack has loaded (RAM and VRAM) when this node runs, and "
                   "passes its input through unchanged. Wire it after the last Qwen3-VL node (e.g. its text) "
                   "so the model is gone before a big image model loads.")
    CATEGORY = "Qwen3-VL"
    FUNCTION = "unload"
    RETURN_TYPES = (ANY,)
    RETURN_NAMES = ("passthrough",)
    OUTPUT_TOOLTIPS = ("The input, unchanged; connect it where the value was going.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": (ANY, {"tooltip": "Anything (text, image...); it is passed through. "
                                                        "Its arrival decides when the models are freed."})}}

    def unload(self, value):
        unload_all()
        return (value,)
