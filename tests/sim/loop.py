"""An asyncio event loop whose time is simulated: the first piece of the deterministic
simulator (issue: a seeded scheduler driving the real actors' plain parts).

Nothing runs on a wall clock. When every task waits, the loop does not sleep until its next
timer: it moves its clock there at once. So `asyncio.sleep(60)`, a phase-two carry timer or a
hold's expiry costs no real time, and the order in which callbacks run depends only on the
code and on what the simulation schedules, never on the machine's speed. A loop on which
every task waits for something that no timer will bring is stuck: `select` raises `Stuck`
instead of blocking forever, so a deadlock in the protocol is a failure with a trace.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Mapping
from typing import Any

WAIT_S_MIN = 1e-6


class Stuck(RuntimeError):
    """Every task waits and no timer is due: the simulated system can make no progress."""


class _Clock:
    def __init__(self, start_s: float) -> None:
        self.now_s = start_s


class _NoIO(selectors.BaseSelector):
    """A selector for a loop without I/O: registrations are kept (the loop registers its own
    wake-up pipe), and waiting for `timeout` seconds moves the clock instead of sleeping."""

    def __init__(self, clock: _Clock) -> None:
        self._clock = clock
        self._keys: dict[Any, selectors.SelectorKey] = {}

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._keys[fileobj] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._keys.pop(fileobj)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise Stuck("every task waits and no timer is due")
        if timeout > 0:  # at least WAIT_S_MIN, as any real wait takes: a float sum may not move
            self._clock.now_s += max(timeout, WAIT_S_MIN)
        return []

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._keys

    def close(self) -> None:
        self._keys.clear()


class SimulatedLoop(asyncio.SelectorEventLoop):
    """`time()` is the simulated clock in seconds from the start; `now_ms()` the wall time it
    stands for, in milliseconds, for the parts that take a clock (a coordinator's `clock=`).
    The loop's own clock starts at 0: at a wall-clock magnitude (~1.7e9 s) a float cannot
    tell apart instants a nanosecond apart, and the loop would never see a timer come due."""

    def __init__(self, epoch_ms: int = 1_765_000_000_000) -> None:
        self._sim_clock = _Clock(0.0)
        self._epoch_ms = epoch_ms
        self.steps = 0  # callbacks run: each is one step of one task, between two awaits
        self.on_step: Callable[[Callable[..., Any]], None] | None = None  # after every step, with its callback
        super().__init__(selector=_NoIO(self._sim_clock))

    def _stepped(self, callback: Callable[..., Any], *args: Any) -> None:
        try:
            callback(*args)
        finally:
            self.steps += 1
            if self.on_step is not None:
                self.on_step(callback)

    def call_soon(self, callback: Callable[..., Any], *args: Any, context: Any = None) -> asyncio.Handle:
        return super().call_soon(self._stepped, callback, *args, context=context)

    def call_at(
        self, when: float, callback: Callable[..., Any], *args: Any, context: Any = None
    ) -> asyncio.TimerHandle:
        return super().call_at(when, self._stepped, callback, *args, context=context)

    def time(self) -> float:
        return self._sim_clock.now_s

    def now_ms(self) -> int:
        return self._epoch_ms + int(self._sim_clock.now_s * 1000)
