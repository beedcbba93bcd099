"""The seed the suite's simulator run draws anew each run, printed at the top of the test
output (tests/conftest.py) with the command that replays it."""

from __future__ import annotations

import time

STEPS = 30_000  # a suite run's steps of faults and traffic per seed
ROTATING = time.time_ns() % 1_000_000
REPLAY = f"python -m tests.sim.simulator --seed-base {ROTATING} --seeds 1 --steps {STEPS}"
