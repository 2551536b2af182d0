"""The served engine's errors: each names the node input to fix (``base_url``, ``api_key_env``, ``timeout_s``...)."""

from __future__ import annotations

from ...utils.errors import InputError


class ServerError(InputError):
    """A served engine could not answer; ``str()`` names the input to fix (base_url, timeout_s, ...)."""


def classify_request_error(status: int, message: str, base_url: str) -> ServerError:
    """A refused request (4xx/5xx with the server's message, already scrubbed) -> an error naming the input."""
    low = message.lower()
    if "context length" in low or "maximum context" in low or "max_model_len" in low or "too long" in low \
            or "exceed" in low and "token" in low:
        return ServerError("max_new_tokens", f"the prompt and answer do not fit the served model's context "
                           f"(server said: {message}).", "Lower max_new_tokens, use fewer or smaller images "
                           "(max_visual_tokens) or frames, or start the server with a larger --max-model-len.")
    if ("at most" in low or "limit" in low) and ("image" in low or "video" in low or "multimodal" in low):
        return ServerError("image", f"the server refused the images or video (server said: {message}).",
                           "Send fewer images per prompt, or raise the server's limit (vLLM: --limit-mm-per-prompt "
                           "'{\"image\": 8, \"video\": 1}').")
    if status in (401, 403):
        return ServerError("api_key_env", f"the server refused the request ({status}: {message}).",
                           "Set api_key_env to the name of an environment variable holding the key "
                           "(QWEN3VL_API_KEY or QWEN3VL_API_KEY_<SUFFIX>).")
    if "media_io_kwargs" in low or "mm_processor_kwargs" in low:
        return ServerError("video", f"the server refused the video's frame times (server said: {message}).",
                           "Start vLLM with --trust-request-mm-kwargs so that the frames keep their true "
                           "timestamps, or describe the video with a local model.")
    return ServerError("base_url", f"the server at {base_url} refused the request ({status}: {message}).",
                       "Check the server's log and that the served model is a Qwen3-VL (vision) model.")
