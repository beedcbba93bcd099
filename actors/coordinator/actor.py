"""The PaymentCoordinator actor: it builds its parts and hands each call to one of them.

A payment's trip inside this process: `pay` → `Payments.trip` (actors/coordinator/payments.py),
which reads top to bottom from claim to answer. The parts, each given only what it needs:

    state       the book (ledger/payment_book.py) and its journal; requests in flight
    remote      every call to another actor (shards, registry)
    history     reads of what was decided
    claims      idempotency keys and redelivered ids
    phase_two   what decided payments owe their shards
    payments    payments, transfers and refunds
    holds       authorization holds: place, capture, void, expire
    recovery    presumed abort after a restart

Every method below is a remote method (`actors.factory.ray_shell` forwards the public ones)
and starts with `ready()`: a call that reaches a restarted coordinator first waits for its
recovery.
"""

from __future__ import annotations

import asyncio

from actors.clock import Clock, now_ms
from actors.coordinator.history import History
from actors.coordinator.holds import Holds
from actors.coordinator.idempotency import Claims
from actors.coordinator.payments import Payments
from actors.coordinator.phase_two import PhaseTwo
from actors.coordinator.recovery import Recovery
from actors.coordinator.remote import Remote
from actors.coordinator.state import CoordinatorState, Turns
from actors.events import EventReads
from actors.peers import PeerLookup
from actors.settings import Settings
from actors.telemetry import Telemetry, placement
from actors.topology import coordinator_name
from journal import Journal, SqliteJournal
from ledger.activity import Minute
from ledger.messages import HoldRequest, PaymentQuery, PaymentRequest, TransferRequest, pack, unpack
from ledger.outcomes import Outcome
from ledger.payment_book import CaptureRequest, PaymentBook
from ledger.records import HoldRecord, PaymentRecord, TransferRecord

PHASE2_ON_CLOSE_WAIT_S = 5.0  # a shard that does not answer leaves the rest to the next start


def coordinator_journal_path(settings: Settings, index: int) -> str:
    return str(settings.data_path / "coordinators" / f"c-{index:03d}.sqlite")


class PaymentCoordinator(EventReads):  # its journal holds API events
    def __init__(
        self,
        settings: Settings,
        index: int,
        peers: PeerLookup | None = None,
        journal: Journal | None = None,
        clock: Clock = now_ms,
    ) -> None:
        self.settings = settings
        self.index = index
        self.journal = journal or SqliteJournal(
            coordinator_journal_path(settings, index),
            batch_rows_max=settings.journal_batch_rows_max,
            busy_timeout_ms=settings.journal_busy_timeout_ms,
            commit_on_loop=settings.journal_commit_on_loop,
            history_elsewhere=settings.history_index_process,
        )
        name = coordinator_name(index)
        self.telemetry = Telemetry(settings.namespace, name)
        self.telemetry.watch(self.journal, f"c-{index}")
        self.journal.event_source = f"c{index:02d}"  # its decisions are API events
        self.state = CoordinatorState(settings, self.journal, clock)
        self.remote = Remote(settings, index, peers)
        self.history = History(self.state)
        self.claims = Claims(self.state, self.history)
        self.phase_two = PhaseTwo(settings, self.state, self.remote)
        turns = Turns()
        self.payments = Payments(
            self.state, self.remote, self.claims, self.phase_two, self.history, self.telemetry, turns
        )
        self.holds = Holds(
            settings, self.state, self.remote, self.claims, self.payments, self.phase_two, self.history, turns
        )
        self.recovery = Recovery(name, self.state, self.remote, self.phase_two, self.history)

    def __repr__(self) -> str:  # Ray prefixes forwarded log lines with it (with the class name during __init__)
        return coordinator_name(self.index)

    @property
    def book(self) -> PaymentBook:
        return self.state.book

    # -- recovery -----------------------------------------------------------------------------
    async def ready(self) -> int:
        """Recover if needed; returns the current epoch. The ingress waits for it."""
        epoch = await self.recovery.ready()
        self.holds.start_sweeping()
        return epoch

    # -- payments -------------------------------------------------------------------------------
    async def pay(self, requests: list[PaymentRequest] | bytes) -> list[Outcome] | bytes:
        """Outcomes in request order; packed if the requests came packed."""
        await self.ready()
        outcomes = await self.payments.pay(unpack(requests, list[PaymentRequest]))
        return pack(outcomes) if isinstance(requests, bytes) else outcomes

    async def transfer(self, requests: list[TransferRequest] | bytes) -> list[Outcome] | bytes:
        """Outcomes in request order; packed if the requests came packed."""
        await self.ready()
        outcomes = await self.payments.transfer(unpack(requests, list[TransferRequest]))
        return pack(outcomes) if isinstance(requests, bytes) else outcomes

    async def refund(self, r: PaymentRequest) -> Outcome:
        await self.ready()
        return await self.payments.refund(r)

    async def finish_phase2(self) -> int:
        """Send every owed phase two and wait for it; how many payments are still unfinished."""
        return await self.phase_two.finish()

    # -- holds ----------------------------------------------------------------------------------
    async def place_hold(self, r: HoldRequest) -> Outcome:
        await self.ready()
        return await self.holds.place(r)

    async def capture_hold(
        self,
        hold_id: str,
        amount_minor: int | None,
        payment_id: str,
        created_at_ms: int,
        key: str | None,
        fingerprint: bytes | None,
        final: bool = True,
    ) -> Outcome:
        await self.ready()
        c = CaptureRequest(hold_id, amount_minor, payment_id, created_at_ms, key, fingerprint, final)
        return await self.holds.capture(c)

    async def void_hold(self, hold_id: str, key: str | None, fingerprint: bytes | None) -> Outcome:
        await self.ready()
        return await self.holds.void(hold_id, key, fingerprint)

    async def get_hold(self, hold_id: str) -> HoldRecord | None:
        await self.ready()
        await self.holds.expire_due()
        return await self.history.hold(hold_id)

    async def list_holds(
        self,
        balance_id: str | None,
        status: str | None,
        limit: int,
        before_id: str | None,
        after_id: str | None,
        ascending: bool,
    ) -> list[HoldRecord]:
        await self.ready()
        await self.holds.expire_due()
        return await self.history.holds(balance_id, status, limit, before_id, after_id, ascending)

    # -- history --------------------------------------------------------------------------------
    async def get_payment(self, payment_id: str) -> PaymentRecord | None:
        await self.ready()
        return await self.history.payment(payment_id)

    async def list_payments(self, q: PaymentQuery) -> list[PaymentRecord]:
        return await self.history.payments(q)

    async def refunds_of(self, payment_id: str) -> list[PaymentRecord]:
        return await self.history.refunds_of(payment_id)

    async def get_transfer(self, transfer_id: str) -> TransferRecord | None:
        await self.ready()
        return await self.history.transfer(transfer_id)

    async def list_transfers(
        self, balance_id: str | None, limit: int, before_id: str | None, after_id: str | None, ascending: bool
    ) -> list[TransferRecord]:
        return await self.history.transfers(balance_id, limit, before_id, after_id, ascending)

    async def activity(self) -> list[Minute]:
        """The payments this coordinator decided per minute, over the last hour."""
        return self.book.activity.minutes(self.state.clock())

    async def stats(self) -> dict[str, object]:
        await self.ready()
        return {
            "coordinator": self.index,
            "epoch": self.book.epoch,
            "unfinished": len(self.book.unfinished),
            **placement(),
        }

    # -- lifecycle ------------------------------------------------------------------------------
    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.phase_two.finish(), PHASE2_ON_CLOSE_WAIT_S)
        except Exception:  # the journal or a shard is down: the next start re-drives what is left
            pass
        self.phase_two.close()
        self.holds.stop_sweeping()
        await self.state.snapshot_written()  # the journal closes regardless
        await self.journal.close()
