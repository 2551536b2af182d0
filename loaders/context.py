"""Which input fills the context: token counts per input of a conversation (for engine.check_context)."""

from __future__ import annotations

from ..utils.messages import collect_media


def vision_token_counts(processor, grid_thw) -> list[int]:
    """Visual tokens of each image (or video) of a processor batch, from its ``*_grid_thw`` rows."""
    if grid_thw is None:
        return []
    merge = getattr(processor.image_processor, "merge_size", 2)
    return [int(t * h * w) // (merge * merge) for t, h, w in grid_thw.tolist()]


def context_parts(processor, conversations: list[list[dict]], inputs) -> dict[str, int]:
    """Tokens per input of the longest conversation: prompt, system_prompt, chat, image and video."""
    tok = processor.tokenizer
    mask = inputs["attention_mask"] if inputs is not None and "attention_mask" in inputs else None
    row = int(mask.sum(dim=1).argmax()) if mask is not None else 0
    image_tokens = vision_token_counts(processor, inputs.get("image_grid_thw") if inputs is not None else None)
    video_tokens = vision_token_counts(processor, inputs.get("video_grid_thw") if inputs is not None else None)
    img_at = sum(len(collect_media(c)[0]) for c in conversations[:row])
    vid_at = sum(len(collect_media(c)[1]) for c in conversations[:row])
    conv = conversations[row]
    parts = dict.fromkeys(("prompt", "system_prompt", "chat", "image", "video"), 0)

    def text_tokens(message: dict) -> int:
        content = message.get("content")
        texts = [content] if isinstance(content, str) else [i.get("text", "") for i in content if "text" in i]
        return sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts if t)

    for i, message in enumerate(conv):
        images, videos = collect_media([message])
        n_img = sum(image_tokens[img_at:img_at + len(images)])
        n_vid = sum(video_tokens[vid_at:vid_at + len(videos)])
        img_at, vid_at = img_at + len(images), vid_at + len(videos)
        if i == len(conv) - 1:
            parts["prompt"] += text_tokens(message)
            parts["image"] += n_img
            parts["video"] += n_vid
        elif i == 0 and message.get("role") == "system":
            parts["system_prompt"] += text_tokens(message)
        else:
            parts["chat"] += text_tokens(message) + n_img + n_vid
    return parts
