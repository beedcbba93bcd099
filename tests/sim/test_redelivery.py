"""The redelivery scenario (tests/sim/redelivery.py) at a fixed seed and at one that changes
with every run (printed, so a failure can be rerun): each key pays once, every acknowledged
payment is in the books, money is conserved. Dropping the coordinator's check for a
redelivered payment id fails it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.sim.redelivery import run

ROTATING = time.time_ns() % 1_000_000


@pytest.mark.parametrize("seed", [23, ROTATING])
def test_redelivered_calls_pay_each_key_once(seed: int, tmp_path: Path) -> None:
    print(f"seed {seed}: python -m tests.sim.redelivery --seed-base {seed} --seeds 1")
    counts = run(seed, tmp_path)
    assert counts["redelivered"] > 20 and counts["succeeded"] > 0, counts
