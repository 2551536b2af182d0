"""Qwen3-VL's own tasks (OCR, text spotting, documents, points, 3D boxes, video events, prompts, GUI clicks).

One conversation per image of the batch, answered in one batched run by :func:`loaders.tasks.run_conversations`
(a video by :func:`loaders.tasks.converse`), then parsed by utils/task_render.py into the fixed outputs.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from ..utils.boxes3d import DEFAULT_FOV, camera_from_fov
from ..utils.errors import InputError
from ..utils.images import check_image_batch, to_uint8_chw
from ..utils.messages import build_messages
from ..utils.presets import GenerationOptions
from ..utils.task_prompts import DEFAULT_STYLE, build_task_prompt, check_task
from ..utils.task_render import TaskOutputs, events_outputs, image_task_outputs, text_task_outputs
from ..utils.text import complete_answers
from ..utils.video import video_sampling
from .tasks import converse, run_conversations

logger = logging.getLogger(__name__)


def run_task(bundle, task: str, options: GenerationOptions, image=None, video=None,
             video_fps: float = 0.0, target: str = "", language: str = "auto", style: str = DEFAULT_STYLE,
             fov: float = DEFAULT_FOV, max_visual_tokens: int = 0,
             on_step: Callable[[int], bool | None] | None = None,
             on_text: Callable[[str, str], object] | None = None) -> TaskOutputs:
    """Run ``task``'s official prompt on every image of ``image`` (or on the clip ``video`` at ``video_fps``).

    ``max_visual_tokens`` 0 takes the task's own budget (2048 for text-heavy pages, else 1280).
    """
    spec = check_task(task)
    prompt = build_task_prompt(task, target, language, style)  # refuses a missing target before any work
    if task == "3d boxes":
        camera_from_fov(1, 1, fov)  # checks fov
    if spec.video or (image is None and video is not None and task == "image prompt"):
        if video is None:
            raise InputError("video", f"is needed for the {task} task.", "Connect a frame batch (e.g. core Get "
                             "Video Components images, VHS Load Video) and its frame rate to video_fps.")
        reply = converse(bundle, prompt.user, options, system_prompt=prompt.system, video=video,
                         video_sampling=video_sampling(video_fps), on_step=on_step, on_text=on_text)
        complete_answers([reply.result], options.max_new_tokens, "video")  # never parse a draft
        logger.debug("%s answer: %s", task, reply.result.text)
        if spec.video:
            return events_outputs(reply.result.text, video, video_fps)
        return text_task_outputs(task, [reply.result.text], video)
    if image is None:
        raise InputError("image", f"is needed for the {task} task.", "Connect an image or an image batch "
                         "(e.g. Load Image); every image gets its own answer.")
    image = check_image_batch(image, "image")
    conversations = [build_messages(prompt.user, [frame], prompt.system) for frame in to_uint8_chw(image).unbind(0)]
    results = run_conversations(bundle, conversations, options,
                                max_visual_tokens=max_visual_tokens or spec.max_visual_tokens, on_step=on_step,
                                on_text=on_text)
    texts, cut_note = complete_answers(results, options.max_new_tokens, "image")  # never parse a draft
    logger.debug("%s answers: %s", task, texts)
    outputs = image_task_outputs(task, texts, image, fov)
    if cut_note:  # those images get empty results; say which in text and raw
        logger.warning("Task %s: %s", task, cut_note)
        note = f"\n(no result for {cut_note})"
        outputs = dataclasses.replace(outputs, text=outputs.text + note, raw=outputs.raw + note)
    return outputs
