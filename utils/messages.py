"""Build chat-template messages (the format Qwen's processor reads) from node inputs."""

from __future__ import annotations

from .errors import InputError


def build_user_turn(prompt: str, images: list | None = None) -> dict:
    """One user turn: every image, in order, then the text."""
    content: list[dict] = [{"type": "image", "image": img} for img in images or []]
    if prompt:
        content.append({"type": "text", "text": prompt})
    return {"role": "user", "content": content}


def build_messages(prompt: str, images: list | None = None, system_prompt: str = "") -> list[dict]:
    """System turn (if any) + one user turn. Refuses a turn with neither text nor image."""
    prompt = prompt or ""
    if not prompt.strip() and not images:
        raise InputError("prompt", "is empty and no image is connected.",
                         "Type a question or instruction, or connect an image.")
    messages: list[dict] = []
    if system_prompt and system_prompt.strip():
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    messages.append(build_user_turn(prompt, images))
    return messages


def collect_media(messages: list[dict]) -> tuple[list, list]:
    """Images and videos of a conversation in the order the chat template places them."""
    images, videos = [], []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            continue
        for item in content:
            kind = item.get("type")
            if kind == "image" or "image" in item:
                images.append(item["image"])
            elif kind == "video" or "video" in item:
                videos.append(item)
    return images, videos
