"""Build chat-template messages (the format Qwen's processor reads) from node inputs, and conversations."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .errors import InputError

logger = logging.getLogger(__name__)

CHAT_TYPE = "QWEN3VL_CHAT"
ROLES = ("system", "user", "assistant")
# Qwen's control tokens are all spelled <|name|> (<|im_start|>, <|im_end|>, <|vision_start|>, <|image_pad|>...).
# Typed text is data: a zero-width space after "<" keeps it readable but no longer that token.
TOKEN_OPEN, NEUTRAL_OPEN = "<|", "<\u200b|"


def neutralise_special_tokens(text: str) -> str:
    """``"<|im_end|>"`` -> ``"<\u200b|im_end|>"``: user text can never spell a control token of the chat template.

    Every ``<|`` gets a zero-width space (U+200B) between its two characters, so no ``<|...|>`` token survives
    (the result has no ``<|`` at all, and running it again changes nothing). The text still reads the same.
    """
    return text.replace(TOKEN_OPEN, NEUTRAL_OPEN) if TOKEN_OPEN in text else text


def check_text(text, input_name: str) -> str:
    """A text input as a ``str`` that UTF-8 can encode (no lone surrogates), or an InputError naming it."""
    if text is None:
        return ""
    if not isinstance(text, str):
        raise InputError(input_name, f"expected text, got {type(text).__name__}.", "Connect a STRING (text) output.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InputError(input_name, f"contains an invalid character at position {err.start} (a lone UTF-16 "
                         f"surrogate, {text[err.start]!r}).", "Remove it or paste the text again; it usually comes "
                         "from a broken copy-paste or a bad \\u escape in JSON.") from None
    return text


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
    prompt = check_text(prompt, "prompt")
    if prompt:
        content.append({"type": "text", "text": neutralise_special_tokens(prompt)})
    return {"role": "user", "content": content}


def build_messages(prompt: str, images: list | None = None, system_prompt: str = "", video: dict | None = None,
                   chat: Chat | None = None) -> list[dict]:
    """System turn (if any) + earlier turns of ``chat`` (if any) + one new user turn.

    Refuses a turn with neither text, image nor video. When ``chat`` continues a conversation, its own system
    prompt (from the first turn) is kept and ``system_prompt`` is not used. ``chat`` is never modified. Typed text
    goes in as data: control tokens such as ``<|im_end|>`` are neutralised (:func:`neutralise_special_tokens`).
    """
    prompt = check_text(prompt, "prompt")
    system_prompt = check_text(system_prompt, "system_prompt")
    if not prompt.strip() and not images and video is None:
        raise InputError("prompt", "is empty and no image or video is connected.",
                         "Type a question or instruction, or connect an image or a video.")
    messages: list[dict] = []
    if chat is not None:
        chat = check_chat(chat)
        if system_prompt and system_prompt.strip() and neutralise_special_tokens(system_prompt) != chat.system_prompt:
            logger.info("system_prompt ignored: a connected chat keeps the system prompt of its first turn.")
        messages.extend(chat.messages)
    elif system_prompt and system_prompt.strip():
        messages.append({"role": "system", "content": [{"type": "text",
                                                         "text": neutralise_special_tokens(system_prompt)}]})
    messages.append(build_user_turn(prompt, images, video))
    return messages


def extend_chat(messages: list[dict], answer: str) -> Chat:
    """The conversation ``messages`` plus the assistant's ``answer``, as a new :class:`Chat`.

    The stored answer is neutralised like typed text: a model that spells ``<|im_start|>`` in plain tokens cannot
    open a turn in the next question of the chat.
    """
    reply = {"role": "assistant", "content": [{"type": "text", "text": neutralise_special_tokens(answer)}]}
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
