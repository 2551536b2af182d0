"""Build chat-template messages (the format Qwen's processor reads) from node inputs, and conversations."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .errors import InputError

logger = logging.getLogger(__name__)

CHAT_TYPE = "QWEN3VL_CHAT"
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Chat:
    """A whole conversation: chat-template messages, images and videos included, ending with an answer.

    Frozen, and its messages are a tuple: continuing a chat builds a new one (ComfyUI caches node outputs,
    so a chat must never change after it was returned). Treat the message dicts as read-only.
    """

    messages: tuple[dict, ...]

    @property
    def turns(self) -> int:
        """How many answers the conversation holds."""
        return sum(1 for m in self.messages if m.get("role") == "assistant")

    @property
    def system_prompt(self) -> str:
        first = self.messages[0] if self.messages else {}
        if first.get("role") != "system":
            return ""
        content = first.get("content")
        if isinstance(content, str):
            return content
        return "".join(item.get("text", "") for item in content)


def check_chat(chat, input_name: str = "chat") -> Chat:
    """A ``chat`` input -> a valid :class:`Chat`, or an error naming the input."""
    advice = "Connect the chat output of a Qwen3-VL Generate node (or leave this input empty to start a new chat)."
    if not isinstance(chat, Chat):
        raise InputError(input_name, f"is not a Qwen3-VL conversation (got {type(chat).__name__}).", advice)
    messages = chat.messages
    if not isinstance(messages, tuple) or not messages:
        raise InputError(input_name, "is an empty conversation.", advice)
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES or "content" not in message:
            raise InputError(input_name, f"message {i} is not a system/user/assistant message.", advice)
        if message["role"] == "system" and i != 0:
            raise InputError(input_name, f"message {i} is a system message after the first turn.", advice)
    return chat


def build_user_turn(prompt: str, images: list | None = None, video: dict | None = None) -> dict:
    """One user turn: every image, in order, then the video (if any), then the text."""
    content: list[dict] = [{"type": "image", "image": img} for img in images or []]
    if video is not None:
        content.append(video)
    if prompt:
        content.append({"type": "text", "text": prompt})
    return {"role": "user", "content": content}


def build_messages(prompt: str, images: list | None = None, system_prompt: str = "", video: dict | None = None,
                   chat: Chat | None = None) -> list[dict]:
    """System turn (if any) + earlier turns of ``chat`` (if any) + one new user turn.

    Refuses a turn with neither text, image nor video. When ``chat`` continues a conversation, its own system
    prompt (from the first turn) is kept and ``system_prompt`` is not used. ``chat`` is never modified.
    """
    prompt = prompt or ""
    if not prompt.strip() and not images and video is None:
        raise InputError("prompt", "is empty and no image or video is connected.",
                         "Type a question or instruction, or connect an image or a video.")
    messages: list[dict] = []
    if chat is not None:
        chat = check_chat(chat)
        if system_prompt and system_prompt.strip() and system_prompt != chat.system_prompt:
            logger.info("system_prompt ignored: a connected chat keeps the system prompt of its first turn.")
        messages.extend(chat.messages)
    elif system_prompt and system_prompt.strip():
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    messages.append(build_user_turn(prompt, images, video))
    return messages


def extend_chat(messages: list[dict], answer: str) -> Chat:
    """The conversation ``messages`` plus the assistant's ``answer``, as a new :class:`Chat`."""
    reply = {"role": "assistant", "content": [{"type": "text", "text": answer}]}
    return Chat(tuple(messages) + (reply,))


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
