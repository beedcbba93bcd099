"""The simulated loop: timers cost no real time, the same program runs the same way every
time, and a deadlock is reported instead of hanging."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from tests.sim.loop import SimulatedLoop, Stuck


def _run(main: object) -> object:
    loop = SimulatedLoop()
    try:
        return loop.run_until_complete(main)  # type: ignore[arg-type]
    finally:
        loop.close()


def test_an_hour_of_timers_takes_no_real_time() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.gather(*(asyncio.sleep(s) for s in (3600, 60, 0.001)))
        return loop.time() - started

    wall = time.perf_counter()
    assert _run(main()) == pytest.approx(3600, abs=1e-3)
    assert time.perf_counter() - wall < 60  # a real hour could not have passed


def _trace(seed: int) -> list[tuple[int, int]]:
    """Tasks that sleep seeded random times and record when each step ran."""
    rng = random.Random(seed)
    delays = [[rng.randint(0, 50) / 1000 for _ in range(20)] for _ in range(8)]
    trace: list[tuple[int, int]] = []

    async def worker(n: int) -> None:
        loop = asyncio.get_running_loop()
        for d in delays[n]:
            await asyncio.sleep(d)
            trace.append((n, int(loop.time() * 1000)))

    async def main() -> None:
        await asyncio.gather(*(worker(n) for n in range(8)))

    _run(main())
    return trace


def test_the_same_seed_runs_the_same_way() -> None:
    assert _trace(7) == _trace(7)
    assert _trace(7) != _trace(8)


def test_a_deadlock_is_reported_not_waited_for() -> None:
    async def main() -> None:
        await asyncio.get_running_loop().create_future()  # nobody will ever set it

    with pytest.raises(Stuck):
        _run(main())
