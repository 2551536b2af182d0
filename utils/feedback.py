"""What a running node shows while it works: a throttle for updates and the live-text layout (pure)."""

from __future__ import annotations

import time
from collections.abc import Callable

UPDATE_INTERVAL = 0.1  # seconds between two updates of a node's progress bar or text: at most ~10 per second
LIVE_TEXT_CHARS = 4000  # the node shows the end of a longer text (the full text is in the outputs)
THINKING_MARK = "[thinking]"
ANSWER_MARK = "[answer]"


class Throttle:
    """``due()`` is True on the first call, then at most once per ``interval`` seconds."""

    def __init__(self, interval: float = UPDATE_INTERVAL, clock: Callable[[], float] = time.monotonic):
        self.interval, self.clock = float(interval), clock
        self.last: float | None = None

    def due(self) -> bool:
        now = self.clock()
        if self.last is not None and now - self.last < self.interval:
            return False
        self.last = now
        return True


def live_text(thinking: str, answer: str, heading: str = "", limit: int = LIVE_TEXT_CHARS) -> str:
    """The text so far as a node shows it: reasoning marked ``[thinking]``, then ``[answer]`` once it starts.

    A plain answer (no reasoning) is shown as it is. Longer than ``limit`` characters: its end, after ``…``.
    """
    thinking, answer = (thinking or "").strip(), (answer or "").strip()
    if thinking:
        body = f"{THINKING_MARK}\n{thinking}" + (f"\n\n{ANSWER_MARK}\n{answer}" if answer else "")
    else:
        body = answer
    if len(body) > limit:
        body = "…" + body[-limit:]
    return f"{heading}\n{body}" if heading else body
