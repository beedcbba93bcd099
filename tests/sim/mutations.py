"""Deliberately broken variants of the ledger, each a rule the simulator must catch breaking
(tests/sim/test_simulator.py expects a violation from each within a CI-sized run):

  skip_fence            shards never record a recovering coordinator's fence, so a phase
                        one its dead incarnation sent still lands after the recovery
  answer_before_durable a coordinator answers and sends phase two before its decision is
                        on disk (applying before journaling, as a crash sees it)
  forget_carried        phase two that rode a phase-one call to a shard that could not
                        write it is taken as done, not sent again
  forget_redelivered    a coordinator does not know the ids it decided, so a call Ray
                        delivers again is decided again
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from actors.coordinator.phase_two import PhaseTwo
from actors.coordinator.state import CoordinatorState
from ledger.book import BalanceBook
from ledger.payment_book import PaymentBook


def _no_fence(self: BalanceBook, coordinator: int, epoch: int) -> None:
    return None


async def _not_durable(self: CoordinatorState) -> None:
    return None


_carried = PhaseTwo.carried


def _forget_unwritten(self: PhaseTwo, carried: dict[int, Any], replies: list[Any]) -> None:
    _carried(self, carried, [r if isinstance(r, BaseException) else (r[0], r[1], []) for r in replies])


def _knows_nothing(self: PaymentBook, some_id: str) -> bool:
    return False


MUTATIONS: dict[str, tuple[type, str, Any]] = {
    "skip_fence": (BalanceBook, "decide_fence", _no_fence),
    "answer_before_durable": (CoordinatorState, "durable", _not_durable),
    "forget_carried": (PhaseTwo, "carried", _forget_unwritten),
    "forget_redelivered": (PaymentBook, "knows", _knows_nothing),
}


@contextlib.contextmanager
def mutated(name: str | None) -> Iterator[None]:
    """Within: the ledger's code with mutation `name` (None: as it is)."""
    if name is None:
        yield
        return
    cls, attribute, broken = MUTATIONS[name]
    original = cls.__dict__[attribute]
    setattr(cls, attribute, broken)
    try:
        yield
    finally:
        setattr(cls, attribute, original)
