"""Qwen3VL_ImageBatch: several pictures (different sizes allowed) -> one IMAGE batch for one question."""

from __future__ import annotations

from ..utils.images import FITS, join_images

MAX_IMAGES = 4


class Qwen3VLImageBatch:
    DESCRIPTION = ("Joins 2 to 4 pictures (or batches) into one batch for a question about several pictures: "
                   "Generate puts every picture of a batch into the same question, in order (Picture 1, Picture "
                   "2...). All take the first picture's size. pad (default) keeps every picture whole: scaled to fit "
                   "and centred on white. Core Batch Images / ImageBatch cut each picture to the first one's shape "
                   "(crop here). Runs on every ComfyUI version.")
    CATEGORY = "Qwen3-VL"
    FUNCTION = "join"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("One IMAGE batch: image_1's pictures, then image_2's, and so on, all at image_1's size.",)

    @classmethod
    def INPUT_TYPES(cls):
        picture = "A picture (or a batch of them) to add after the ones above."
        return {
            "required": {
                "image_1": ("IMAGE", {"tooltip": "The first picture (or batch); every picture takes its size."}),
                "image_2": ("IMAGE", {"tooltip": picture}),
                "fit": (list(FITS), {"default": "pad", "tooltip": "How a picture of another shape takes image_1's "
                        "size. pad: whole, scaled to fit, centred on white (nothing cut). crop: scaled to cover, "
                        "the centre kept (core ImageBatch). stretch: scaled to the size, squeezed."}),
            },
            "optional": {f"image_{i}": ("IMAGE", {"tooltip": picture}) for i in range(3, MAX_IMAGES + 1)},
        }

    def join(self, image_1, image_2, fit, **more):
        named = [("image_1", image_1), ("image_2", image_2)]
        named += [(f"image_{i}", more.get(f"image_{i}")) for i in range(3, MAX_IMAGES + 1)]
        return (join_images(named, fit),)
