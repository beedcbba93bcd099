"""The time and the randomness that the actors' records carry, in one place.

A server reads the wall clock and the OS's entropy. The deterministic simulator
(tests/sim) swaps in its scheduler's time and a seeded source for the length of a run
(`simulated`), so that one seed replays one run exactly: the same ids, the same timestamps,
the same order of everything keyed by them. The actors read these at call time, never once
at import, so the swap reaches every part.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator

from ledger.ids import make_id

Clock = Callable[[], int]  # milliseconds since the epoch
Entropy = Callable[[int], bytes]  # n random bytes


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


_clock: Clock = _wall_ms
_entropy: Entropy = os.urandom


def now_ms() -> int:
    return _clock()


def random_bytes(n: int) -> bytes:
    return _entropy(n)


def new_id(prefix: str) -> str:
    return make_id(prefix, _clock(), _entropy(10))


@contextlib.contextmanager
def simulated(clock: Clock, entropy: Entropy) -> Iterator[None]:
    """Within: every `now_ms`, `random_bytes` and `new_id` of this process comes from these."""
    global _clock, _entropy
    saved = _clock, _entropy
    _clock, _entropy = clock, entropy
    try:
        yield
    finally:
        _clock, _entropy = saved
