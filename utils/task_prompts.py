"""Qwen3-VL's own tasks: the prompt each one sends, and what it needs.

Where each prompt comes from (Qwen's cookbooks, QwenLM/Qwen3-VL and QwenLM/Qwen2.5-VL on GitHub):

- ``ocr``: "Read all the text in the image." -- Qwen2.5-VL ``cookbooks/ocr.ipynb`` example 1, the same
  wording in Qwen3-VL ``cookbooks/ocr.ipynb`` (that notebook is over 4 MiB; read in a public local copy
  of it). The language hint sentence is this pack's own addition (no cookbook gives one).
- ``text spotting``: "Spotting all the text in the image with line-level, and output in JSON format as
  [{'bbox_2d': [x1, y1, x2, y2], 'text_content': 'text'}, ...]." -- Qwen3-VL ``cookbooks/ocr.ipynb``
  (Qwen2.5-VL's notebook has the same sentence without the format example). That notebook maps the
  relative coordinates with ``/ 999``; we use ``/ 1000`` like every other Qwen3-VL task (SPEC section 6);
  the two differ by 0.1 %.
- ``document html`` / ``document markdown``: "qwenvl html" / "qwenvl markdown" -- Qwen3-VL
  ``cookbooks/document_parsing.ipynb`` (no system prompt; ``data-bbox`` and the Markdown
  ``<!-- Image (x1, y1, x2, y2) -->`` comments are relative 0..1000).
- ``points``: :func:`utils.grounding.build_grounding_prompt` in points mode (Qwen3-VL
  ``cookbooks/2d_grounding.ipynb`` wording; ``spatial_understanding.ipynb`` answers ``point_2d``).
- ``3d boxes``: Qwen3-VL ``cookbooks/3d_grounding.ipynb`` example 1 ("Find all cars in this image. For
  each car, provide its 3D bounding box. The output format required is JSON: ...") with the category
  made a parameter.
- ``video events``: Qwen3-VL ``cookbooks/video_understanding.ipynb`` section 2, verbatim.
- ``gui click``: the ``computer_use`` tool of Qwen3-VL ``cookbooks/utils/agent_function_call.py`` (its
  description and its pointing actions; the keyboard, scroll and wait actions left out), laid out as the
  function-call system prompt that ``cookbooks/mobile_agent.ipynb`` prints, with that notebook's 999x999
  screen (coordinates rescaled with ``/ 999``) and its "The user query: ..." turn.
- ``image prompt``: this pack's own wording (Qwen publishes no prompt-writing prompt).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .errors import InputError
from .grounding import build_grounding_prompt


@dataclass(frozen=True)
class TaskSpec:
    """One task: its default answer length and image budget, and which inputs it reads."""

    name: str
    max_new_tokens: int
    max_visual_tokens: int
    needs_target: bool = False
    video: bool = False
    optional_target: bool = False  # image prompt: target is an extra instruction, not required

    @property
    def reads_target(self) -> bool:
        """Whether the prompt uses ``target`` at all (the frontend hides it for the other tasks)."""
        return self.needs_target or self.optional_target


TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in (
    TaskSpec("ocr", 2048, 2048),
    TaskSpec("text spotting", 4096, 2048),
    TaskSpec("document html", 4096, 2048),
    TaskSpec("document markdown", 4096, 2048),
    TaskSpec("points", 1024, 1280, needs_target=True),
    TaskSpec("3d boxes", 1024, 1280, needs_target=True),
    TaskSpec("video events", 2048, 0, video=True),
    TaskSpec("image prompt", 1024, 1280, optional_target=True),
    TaskSpec("gui click", 512, 1280, needs_target=True),
)}
TASK_NAMES = tuple(TASKS)

# Main languages among the 32 that Qwen3-VL reads (Qwen3-VL README: "Supports 32 languages"; the repository
# publishes no full list).
LANGUAGES = ("auto", "English", "Chinese", "Japanese", "Korean", "French", "German", "Spanish", "Portuguese",
             "Italian", "Dutch", "Russian", "Ukrainian", "Polish", "Czech", "Greek", "Turkish", "Arabic",
             "Hebrew", "Persian", "Hindi", "Bengali", "Thai", "Vietnamese", "Indonesian", "Malay")
LANGUAGE_TASKS = ("ocr", "text spotting")

PROMPT_KINDS = {
    "Flux": ("Write a text-to-image prompt for the FLUX model that would recreate this image. Use natural "
             "sentences: the main subject and its appearance, the action, the setting, the composition and "
             "camera angle, the lighting, the colours and the artistic style or medium."),
    "SDXL tags": ("Write Stable Diffusion XL tags for this image: a comma-separated list of short booru-style "
                  "tags, most important first (subject, count, appearance, clothing, pose, setting, lighting, "
                  "style, medium), lowercase, no sentences."),
    "Wan video": ("Write a prompt for the Wan image-to-video model that brings this scene to life. Describe the "
                  "subject and the setting, then the motion over time in the present tense: what moves and how, "
                  "the camera movement, the atmosphere and the lighting."),
    "detailed": "Describe this image in detail.",
}
LENGTHS = {"short": ("about 30 words", "about 15 tags"), "medium": ("about 80 words", "about 30 tags"),
           "long": ("about 200 words", "about 60 tags")}
PROMPT_STYLES = tuple(f"{kind} {length}" for kind in PROMPT_KINDS for length in LENGTHS)
DEFAULT_STYLE = "Flux medium"

OCR_PROMPT = "Read all the text in the image."
SPOTTING_PROMPT = ("Spotting all the text in the image with line-level, and output in JSON format as "
                   "[{'bbox_2d': [x1, y1, x2, y2], 'text_content': 'text'}, ...].")
DOCUMENT_PROMPTS = {"document html": "qwenvl html", "document markdown": "qwenvl markdown"}
BOX3D_FORMAT = ('[{"bbox_3d":[x_center, y_center, z_center, x_size, y_size, z_size, roll, pitch, yaw],'
                '"label":"category"}]')
EVENTS_PROMPT = ("Localize a series of activity events in the video, output the start and end timestamp for each "
                 "event, and describe each event with sentences. Provide the result in json format with "
                 "'mm:ss.ff' format for time depiction.")

GUI_SCREEN = 999  # mobile_agent.ipynb: "The screen's resolution is 999x999", rescaled with / 999
_COMPUTER_USE = {"type": "function", "function": {
    "name": "computer_use",
    "description": "Use a mouse and keyboard to interact with a computer, and take screenshots.\n"
                   "* This is an interface to a desktop GUI. You do not have access to a terminal or applications "
                   "menu. You must click on desktop icons to start applications.\n"
                   f"* The screen's resolution is {GUI_SCREEN}x{GUI_SCREEN}.\n"
                   "* Whenever you intend to move the cursor to click on an element like an icon, you should "
                   "consult a screenshot to determine the coordinates of the element before moving the cursor.\n"
                   "* Make sure to click any buttons, links, icons, etc with the cursor tip in the center of the "
                   "element. Don't click boxes on their edges.",
    "parameters": {"properties": {
        "action": {"description": "The action to perform. The available actions are:\n"
                                  "* `mouse_move`: Move the cursor to a specified (x, y) pixel coordinate on the "
                                  "screen.\n* `left_click`: Click the left mouse button at a specified (x, y) pixel "
                                  "coordinate on the screen.\n* `right_click`: Click the right mouse button at a "
                                  "specified (x, y) pixel coordinate on the screen.\n* `double_click`: Double-click "
                                  "the left mouse button at a specified (x, y) pixel coordinate on the screen.\n"
                                  "* `answer`: Answer a question.",
                   "enum": ["mouse_move", "left_click", "right_click", "double_click", "answer"], "type": "string"},
        "coordinate": {"description": "(x, y): The x (pixels from the left edge) and y (pixels from the top edge) "
                                      "coordinates to move the mouse to.", "type": "array"},
        "text": {"description": "Required only by `action=answer`.", "type": "string"}},
        "required": ["action"], "type": "object"}}}
GUI_SYSTEM_PROMPT = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with "
    "function signatures within <tools></tools> XML tags:\n<tools>\n" + json.dumps(_COMPUTER_USE) + "\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within <tool_call></tool_call> "
    'XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>\n\n'
    "# Response format\n\nResponse format for every step:\n1) Thought: one concise sentence explaining the next "
    "move (no multi-step reasoning).\n2) Action: a short imperative describing what to do in the UI.\n3) A single "
    '<tool_call>...</tool_call> block containing only the JSON: {"name": <function-name>, "arguments": '
    "<args-json-object>}.\n\nRules:\n- Output exactly in the order: Thought, Action, <tool_call>.\n- Be brief: one "
    "sentence for Thought, one for Action.\n- Do not output anything else outside those three parts.")


@dataclass(frozen=True)
class TaskPrompt:
    system: str
    user: str


def check_task(task: str) -> TaskSpec:
    if task not in TASKS:
        raise InputError("task", f"unknown task {task!r}.", f"Choose one of {', '.join(TASK_NAMES)}.")
    return TASKS[task]


def _clean_target(target: str) -> str:
    return " ".join((target or "").split()).strip(" ,")


def _needs(target: str, task: str, example: str) -> str:
    cleaned = _clean_target(target)
    if not cleaned:
        raise InputError("target", f"is empty; the {task} task needs it.", f"Type {example}.")
    return cleaned


def _language_hint(language: str) -> str:
    if language not in LANGUAGES:
        raise InputError("language", f"unknown language {language!r}.", f"Choose one of {', '.join(LANGUAGES)}.")
    return "" if language == "auto" else f" The text is in {language}."


def _image_prompt(style: str, target: str) -> str:
    if style not in PROMPT_STYLES:
        raise InputError("style", f"unknown style {style!r}.", f"Choose one of {', '.join(PROMPT_STYLES)}.")
    kind, length = style.rsplit(" ", 1)
    words, tags = LENGTHS[length]
    size = tags if kind == "SDXL tags" else words
    extra = _clean_target(target)
    prompt = f"{PROMPT_KINDS[kind]} Length: {size}."
    if extra:
        prompt += f" Also follow this instruction: {extra}."
    return prompt + " Output only the prompt, without a title or any comment."


def build_task_prompt(task: str, target: str = "", language: str = "auto", style: str = DEFAULT_STYLE) -> TaskPrompt:
    """The system and user text for ``task`` (see the module docstring for each prompt's source)."""
    check_task(task)
    if task == "ocr":
        return TaskPrompt("", OCR_PROMPT + _language_hint(language))
    if task == "text spotting":
        return TaskPrompt("", SPOTTING_PROMPT + _language_hint(language))
    if task in DOCUMENT_PROMPTS:
        return TaskPrompt("", DOCUMENT_PROMPTS[task])
    if task == "points":
        return TaskPrompt("", build_grounding_prompt(_needs(target, task, "what to point at, e.g. cat, dog"),
                                                     "points"))
    if task == "3d boxes":
        what = _needs(target, task, "what to find, e.g. car or chair, table")
        return TaskPrompt("", f"Find all {what} in this image. For each one, provide its 3D bounding box. "
                              f"The output format required is JSON: `{BOX3D_FORMAT}`.")
    if task == "video events":
        return TaskPrompt("", EVENTS_PROMPT)
    if task == "gui click":
        instruction = _needs(target, task, "what to do on the screenshot, e.g. click the Save button")
        return TaskPrompt(GUI_SYSTEM_PROMPT, f"The user query: {instruction}.")
    return TaskPrompt("", _image_prompt(style, target))
