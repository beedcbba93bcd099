"""The last events of a simulated run, each stamped with its step and simulated time: what a
failing seed prints, so that its end can be read without rerunning it."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable


class Trace:
    def __init__(self, keep: int = 200) -> None:
        self.events: deque[str] = deque(maxlen=keep)
        self.step: Callable[[], int] = lambda: 0
        self.now_s: Callable[[], float] = lambda: 0.0

    def add(self, what: str) -> None:
        self.events.append(f"{self.step():>9} {self.now_s():9.3f}s {what}")

    def tail(self, n: int = 60) -> list[str]:
        return list(self.events)[-n:]
