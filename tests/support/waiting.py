"""Waiting for something another process does, with a bound that fails the test (never a
measurement: no test asserts how long anything took)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

BOUND_S = 120.0


async def until(condition: Callable[[], bool | Awaitable[bool]], what: str, bound_s: float = BOUND_S) -> None:
    deadline = time.monotonic() + bound_s
    while True:
        met = condition()
        if inspect.isawaitable(met):
            met = await met
        if met:
            return
        assert time.monotonic() < deadline, f"not within {bound_s} s: {what}"
        await asyncio.sleep(0.02)
