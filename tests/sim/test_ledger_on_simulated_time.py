"""The real actor classes (in process, journals in memory) on the simulated loop: a
phase-two carry timer of a minute and a hold's expiry run in no real time, and money is
conserved. The seeded scheduler of messages and faults builds on this."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from ledger.ids import make_id
from ledger.messages import HoldRequest
from ledger.results import PaymentStatus
from tests.sim.loop import SimulatedLoop
from tests.support.audit import audit
from tests.support.local import LocalLedger
from tests.support.scenario import open_funded_balances, payment


def test_timers_of_the_real_actors_run_on_simulated_time(tmp_path: Path) -> None:
    loop = SimulatedLoop()

    async def main() -> None:
        ledger = LocalLedger(
            tmp_path, memory=True, clock=loop.now_ms, phase2_carry_ms=60_000, hold_sweep_interval_ms=1_000
        )
        await ledger.start()
        _, (a, b), deposits = await open_funded_balances(ledger.client, 2, 10_00)
        # Concurrent batches: phase two waits a carry (a simulated minute) or the next batch.
        batches = await asyncio.gather(*(ledger.client.pay([payment(a, b, 1_00)]) for _ in range(5)))
        paid = [p for batch in batches for p in batch]
        assert all(p.status == PaymentStatus.SUCCESS for p in paid)
        now = loop.now_ms()
        hold = HoldRequest(make_id("hold", now, os.urandom(10)), a, b, 2_00, "USD", now, now + 30_000)
        assert (await ledger.client.place_hold(hold)).hold is not None
        await asyncio.sleep(31)  # past its expiry and a sweep: the hold lets its money go
        expired = await ledger.client.get_hold(hold.hold_id)
        assert expired is not None and expired.status == "expired"
        await asyncio.sleep(61)  # every carry timer has fired: nothing owed is left unsent
        assert ledger.coordinator().phase_two.idle and not ledger.coordinator().book.unfinished
        audit(await ledger.client.all_balances(), [*deposits, *paid])
        await ledger.stop()

    wall = time.perf_counter()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert loop.time() >= 92 and time.perf_counter() - wall < 60  # simulated minutes, real seconds
