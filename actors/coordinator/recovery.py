"""Recovery by presumed abort (docs/design.md §4): a new incarnation journals a higher
epoch, fences every shard (its older epochs' reservations are refused from then on) and
collects the reservations it left open. One whose payment has a decision is driven to it;
one without is aborted (`system_failure`, ABORTED_IN_RECOVERY) and voided. Then every
unfinished payment's phase two is sent again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

from actors.coordinator.history import History
from actors.coordinator.phase_two import PhaseTwo
from actors.coordinator.remote import Remote
from actors.coordinator.state import CoordinatorState
from actors.logs import event
from actors.telemetry import placement
from ledger import payment_book
from ledger.book import OpenReservation
from ledger.ids import is_hold_id
from ledger.messages import HoldRef
from ledger.records import EpochStarted, HoldRecord

log = logging.getLogger("rayledger.coordinator")


class Recovery:
    def __init__(
        self, name: str, state: CoordinatorState, remote: Remote, phase_two: PhaseTwo, history: History
    ) -> None:
        self.name = name
        self.state = state
        self.remote = remote
        self.phase_two = phase_two
        self.history = history
        self._task: asyncio.Task[None] | None = None

    async def ready(self) -> int:
        """Recover once (again if the last attempt failed); the current epoch."""
        failed = (
            self._task is not None
            and self._task.done()
            and (self._task.cancelled() or self._task.exception() is not None)
        )
        if self._task is None or failed:
            # A failed recovery (a journal that cannot be written or read just then) is
            # tried again by the next caller, not remembered forever.
            self._task = asyncio.get_running_loop().create_task(self.recover())
        await asyncio.shield(self._task)
        return self.state.epoch

    def abandon(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def recover(self) -> None:
        started = time.perf_counter()
        book = self.state.book
        self.state.commit(EpochStarted(book.epoch + 1))
        await self.state.durable()
        reservations: dict[str, list[OpenReservation]] = defaultdict(list)
        for r in await self.remote.fence(book.epoch):
            reservations[r.payment_id].append(r)
        aborted: dict[str, list[OpenReservation]] = {}
        closed_holds: list[HoldRecord] = []
        for payment_id, rs in reservations.items():
            if payment_id in book.unfinished or payment_id in book.recent or payment_id in book.open_holds:
                continue
            hold = await self.history.hold(payment_id) if is_hold_id(payment_id) else None
            if hold is not None:
                # Captured: its payment is unfinished and posts it below. Voided, expired or
                # refused: release what is still held.
                if hold.status != "captured":
                    closed_holds.append(hold)
                continue
            decided = await self.history.decision(payment_id)
            if decided is not None:
                book.redrive(decided)
                continue
            aborted[payment_id] = rs  # presumed abort: it has no decision
        await self.remote.void(payment_book.sides_of(closed_holds))
        # Released before the abort is journaled: an exchange payment holds on four balances,
        # more than its record names, and a crash in between finds nothing left to abort.
        await self.remote.void([HoldRef(p, r.balance_id) for p, rs in aborted.items() for r in rs])
        for payment_id in aborted:
            event(log, "aborted_in_recovery", logging.WARNING, actor=self.name, payment_id=payment_id)
        for frame in payment_book.aborts(aborted, self.state.clock()):
            self.state.commit(*frame)
        await self.state.durable()
        redriven = list(book.unfinished.values())
        await self.phase_two.now(redriven)
        event(
            log,
            "recovered",
            actor=self.name,
            epoch=book.epoch,
            records_replayed=self.state.replayed,
            settled=len(redriven),  # decided (before the restart or aborted just now), posted or voided now
            aborted=len(aborted),
            seconds=round(time.perf_counter() - started, 3),
            **placement(),
        )
