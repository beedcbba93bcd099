"""PaymentCoordinator: moves money between two balances with reserve-then-post.

    phase 1   reserve(from) ‖ prepare(to)        each shard journals its hold first
    decide    Decided(payment) journaled         the commit point
    reply     at the commit point: the outcome is final and durable
    phase 2   post ‖ post   or   void ‖ void     idempotent, re-driven until done

Phase two of a payment is owed to its shards once decided. While other payments are in
progress it rides the next phase-one call to the same shard (one call and one flush there
instead of two), or goes on its own after `phase2_carry_ms`; alone, it goes at once. A
shard's reads wait for the payments in flight on the balances they read, so a client told
`success` still sees the money moved on its next read.
`Completions` is journaled when every shard has confirmed; until then the payment counts as
unfinished, and a restart re-drives it.

Recovery (presumed abort): a new incarnation journals a higher epoch, fences every shard
(older-epoch reserves are refused from then on) and collects the holds it left open. A hold
whose payment has a decision is driven to it; one without is aborted (a `system_failure`
decision) and voided. Calls are batched: per batch of payments, one phase-one call per
shard (reserves and prepares together, and the phase two owed there), or for phase two
alone one `settle` call per shard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import msgspec

from actors.events import EventReads
from actors.logs import event
from actors.memory import freeze_long_lived_state
from actors.peers import PeerLookup, call_until_done, ray_lookup
from actors.registry import Registry
from actors.settings import Settings
from actors.shard import BalanceShard
from actors.telemetry import Telemetry, placement
from actors.topology import REGISTRY_NAME, coordinator_name, partition_of, shard_name, shard_of_partition
from journal import Journal, JournalUnavailable, SqliteJournal
from ledger.activity import Activity, Minute
from ledger.book import DEBIT, OpenHold
from ledger.ids import is_hold_id
from ledger.messages import (
    HoldRef,
    HoldRequest,
    PaymentQuery,
    PaymentRequest,
    SideRequest,
    TransferRequest,
    pack,
    unpack,
)
from ledger.outcomes import (
    ABORTED_IN_RECOVERY,
    JOURNAL_UNAVAILABLE,
    Outcome,
    decided_outcome,
    decided_record,
    is_transfer_id,
    pending_record,
    pending_transfer,
    undecided,
)
from ledger.records import (
    Completed,
    Completions,
    Decided,
    EpochStarted,
    HoldClosed,
    HoldPlaced,
    HoldRecord,
    PaymentRecord,
    Record,
    TransferDecided,
    TransferLeg,
    TransferRecord,
    payment_balances,
    payment_sides,
)
from ledger.results import Check, PaymentStatus, decide, decide_fx, decide_legs

log = logging.getLogger("rayledger.coordinator")


def coordinator_journal_path(settings: Settings, index: int) -> str:
    return str(settings.data_path / "coordinators" / f"c-{index:03d}.sqlite")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class CoordinatorSnapshot(msgspec.Struct, frozen=True, array_like=True):
    """A coordinator's state at one journal position (snapshots bound its replay).
    Ordered collections are oldest first, as their caches evict."""

    epoch: int
    unfinished: list[PaymentRecord]
    recent: list[PaymentRecord]
    open_holds: list[HoldRecord]
    recent_holds: list[HoldRecord]
    keys: list[tuple[str, bytes | None, str, int]]  # key, fingerprint, payment or hold id, at ms
    keys_evicted_until_ms: int
    recent_transfers: list[TransferRecord] = []
    activity: list[Minute] = []  # payments decided per minute over the last hour


HOLD_HELD = "held"


def _packed(owed: Owed | None) -> tuple[bytes, ...]:
    """Owed posts and voids as the trailing arguments of a shard call (none if nothing is owed)."""
    return () if owed is None else (pack(owed.posts), pack(owed.voids))


REFUNDS_PER_PAYMENT_MAX = 100  # partial refunds of one payment (each is checked against all before it)
KEY_RECORDS_MAX = 8  # records one idempotency key can tag besides its payment (hold, close)


def _matches(q: PaymentQuery, payment_id: str, p: PaymentRequest | PaymentRecord) -> bool:
    """Whether a payment passes the filters a history tag did not already apply."""
    if q.balance_id is not None and q.balance_id not in (p.balance_from, p.balance_to):
        return False
    if q.status is not None and getattr(p, "status", PaymentStatus.PENDING) != q.status:
        return False
    if q.idempotency_key is not None and p.idempotency_key != q.idempotency_key:
        return False
    return (q.before_id is None or payment_id < q.before_id) and (q.after_id is None or payment_id > q.after_id)


def _legs(r: PaymentRequest) -> list[tuple[str, str, str, int, str]]:
    """Phase one's (hold id, from, to, amount, currency) for a payment: one pair of holds,
    or two for an exchange payment."""
    if r.fx is None:
        return [(r.payment_id, r.balance_from, r.balance_to, r.amount_minor, r.currency)]
    return [(r.payment_id, *side) for side in payment_sides(r)]


def _checks(r: PaymentRequest, codes: dict[tuple[str, str], Check]) -> list[Check]:
    return [codes[(r.payment_id, b)] for b in payment_balances(r)]


def _decide_request(
    r: PaymentRequest, codes: dict[tuple[str, str], Check], expired: set[str]
) -> tuple[PaymentStatus, str | None]:
    if r.payment_id in expired:
        return PaymentStatus.QUOTE_EXPIRED, "quote_expired"
    if r.fx is None:
        return decide(codes[(r.payment_id, r.balance_from)], codes[(r.payment_id, r.balance_to)])
    return decide_fx(*_checks(r, codes))


class _Turns:
    """A lock and how many hold or wait for it (so it is dropped only when nobody does)."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class Owed:
    """Phase two owed to one shard: legs of decided payments not yet sent there."""

    __slots__ = ("payments", "posts", "voids")

    def __init__(self) -> None:
        self.posts: list[HoldRef] = []
        self.voids: list[HoldRef] = []
        self.payments: list[str] = []  # with a leg here, each once

    def only(self, refs: list[HoldRef]) -> Owed:
        """The part of this owed that concerns `refs` (those a shard could not write)."""
        again = Owed()
        ids = {r.payment_id for r in refs}
        again.posts = [r for r in self.posts if r.payment_id in ids]
        again.voids = [r for r in self.voids if r.payment_id in ids]
        again.payments = [p for p in self.payments if p in ids]
        return again


PHASE2_ON_CLOSE_WAIT_S = 5.0  # a shard that does not answer leaves the rest to the next start


class PaymentCoordinator(EventReads):  # its journal holds API events
    def __init__(
        self, settings: Settings, index: int, peers: PeerLookup | None = None, journal: Journal | None = None
    ) -> None:
        self.settings = settings
        self.index = index
        self._peers = peers
        self.journal = journal or SqliteJournal(
            coordinator_journal_path(settings, index),
            batch_rows_max=settings.journal_batch_rows_max,
            busy_timeout_ms=settings.journal_busy_timeout_ms,
            commit_on_loop=settings.journal_commit_on_loop,
        )
        self.epoch = 0
        self.unfinished: dict[str, PaymentRecord] = {}  # decided, phase 2 not yet durable
        self.recent: OrderedDict[str, PaymentRecord] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[PaymentRecord]] = {}
        self._pending: dict[str, PaymentRequest] = {}  # in flight, shown as `pending`
        self.recent_transfers: OrderedDict[str, TransferRecord] = OrderedDict()
        self._pending_transfers: dict[str, TransferRequest] = {}
        self._turns: dict[str, _Turns] = {}  # payment id -> its refunds, hold id -> its captures: one at a time
        self.open_holds: dict[str, HoldRecord] = {}  # status held: never presumed aborted
        self.recent_holds: OrderedDict[str, HoldRecord] = OrderedDict()
        self._sweeper: asyncio.Task[None] | None = None
        self._owed: dict[int, Owed] = {}  # shard -> phase two not yet sent there
        self._legs_left: dict[str, int] = {}  # payment -> shards yet to confirm its phase two
        self._carry_timer: asyncio.TimerHandle | None = None
        self._paying = 0  # pay calls in progress: another one will soon make a phase-one call
        self._sending: set[asyncio.Task[None]] = set()
        self._closed = False
        self.keys: OrderedDict[str, tuple[bytes | None, str, int]] = OrderedDict()
        self._keys_evicted_until_ms = 0  # newest creation time of a key dropped inside the window
        self._recovery: asyncio.Task[None] | None = None
        self.snapshot_seq = 0
        self._snapshotting: asyncio.Task[None] | None = None
        self._name = coordinator_name(index)
        self._activity = Activity()
        self.telemetry = Telemetry(settings.namespace, self._name)
        self.telemetry.watch(self.journal, f"c-{index}")
        self.journal.event_source = f"c{index:02d}"  # its decisions are API events
        loaded = self.journal.load()
        if loaded.snapshot is not None:
            self._restore(msgspec.msgpack.decode(loaded.snapshot, type=CoordinatorSnapshot))
            self.snapshot_seq = loaded.snapshot_seq
        self._replayed = 0
        for stored in loaded.records:
            self._apply(stored.record)
            self._replayed += 1
        freeze_long_lived_state()

    def __repr__(self) -> str:  # Ray prefixes forwarded log lines with it (with the class name during __init__)
        return coordinator_name(self.index)

    # -- state ------------------------------------------------------------------------------
    def _apply(self, record: Record) -> None:
        if isinstance(record, Decided):
            p = record.payment
            self.unfinished[p.id] = p
            self._remember(p)
            self._activity.add(p)
            if p.idempotency_key is not None:
                self._remember_key(p.idempotency_key, p.fingerprint, p.id, p.created_at_ms)
        elif isinstance(record, TransferDecided):
            t = record.transfer
            self._remember_transfer(t)
            if t.idempotency_key is not None:
                self._remember_key(t.idempotency_key, t.fingerprint, t.id, t.created_at_ms)
        elif isinstance(record, Completions):
            for payment_id in record.payment_ids:
                self.unfinished.pop(payment_id, None)
        elif isinstance(record, Completed):
            self.unfinished.pop(record.payment_id, None)
        elif isinstance(record, HoldPlaced):
            self._remember_hold(record.hold)
            if record.hold.idempotency_key is not None:
                h = record.hold
                self._remember_key(h.idempotency_key, h.fingerprint, h.id, h.created_at_ms)  # type: ignore[arg-type]
        elif isinstance(record, HoldClosed):
            self._remember_hold(record.hold)
            if record.idempotency_key is not None:
                closed_ms = record.hold.closed_at_ms or 0
                self._remember_key(record.idempotency_key, record.fingerprint, record.hold.id, closed_ms)
        elif isinstance(record, EpochStarted):
            assert record.epoch > self.epoch, "epochs only grow"
            self.epoch = record.epoch
        else:
            raise AssertionError(f"not a coordinator record: {record!r}")

    def _commit(self, record: Record) -> None:
        self.journal.append(record)
        self._apply(record)
        self._maybe_snapshot()

    def _commit_together(self, records: list[Record]) -> None:
        """Records durable all or none (one frame)."""
        self.journal.append_together(records)
        for record in records:
            self._apply(record)
        self._maybe_snapshot()

    def _maybe_snapshot(self) -> None:
        if (
            self.journal.last_seq - self.snapshot_seq >= self.settings.snapshot_every_records
            and self._snapshotting is None
        ):
            # State and journal position are captured together, with no await between.
            write = self.journal.save_snapshot(msgspec.msgpack.encode(self.state()))
            self._snapshotting = asyncio.get_running_loop().create_task(self._save_snapshot(write))

    async def _save_snapshot(self, write: Coroutine[None, None, int]) -> None:
        try:
            self.snapshot_seq = await write
        finally:
            self._snapshotting = None

    def _journaled(self, some_id: str) -> bool:
        return (
            some_id in self.unfinished
            or some_id in self.recent
            or some_id in self.open_holds
            or some_id in self.recent_holds
            or some_id in self.recent_transfers
        )

    def state(self) -> CoordinatorSnapshot:
        """What replaying the journal up to its last record rebuilds. Keys claimed by a
        request still in flight, not journaled yet, are left out: the request may still
        give its key back (nothing decided), and replay would not know them either."""
        keys = [
            (key, *value)
            for key, value in self.keys.items()
            if value[1] not in self._inflight or self._journaled(value[1])
        ]
        return CoordinatorSnapshot(
            epoch=self.epoch,
            unfinished=list(self.unfinished.values()),
            recent=list(self.recent.values()),
            open_holds=list(self.open_holds.values()),
            recent_holds=list(self.recent_holds.values()),
            keys=keys,
            keys_evicted_until_ms=self._keys_evicted_until_ms,
            recent_transfers=list(self.recent_transfers.values()),
            activity=self._activity.minutes(),
        )

    def _restore(self, snap: CoordinatorSnapshot) -> None:
        self.epoch = snap.epoch
        self.unfinished = {p.id: p for p in snap.unfinished}
        self.recent = OrderedDict((p.id, p) for p in snap.recent)
        self.open_holds = {h.id: h for h in snap.open_holds}
        self.recent_holds = OrderedDict((h.id, h) for h in snap.recent_holds)
        self.keys = OrderedDict((key, (fingerprint, some_id, at_ms)) for key, fingerprint, some_id, at_ms in snap.keys)
        self._keys_evicted_until_ms = snap.keys_evicted_until_ms
        self.recent_transfers = OrderedDict((t.id, t) for t in snap.recent_transfers)
        self._activity = Activity(snap.activity)

    def _remember(self, payment: PaymentRecord) -> None:
        self.recent[payment.id] = payment
        self.recent.move_to_end(payment.id)
        while len(self.recent) > self.settings.recent_payments_max:
            self.recent.popitem(last=False)

    def _remember_transfer(self, transfer: TransferRecord) -> None:
        self.recent_transfers[transfer.id] = transfer
        self.recent_transfers.move_to_end(transfer.id)
        while len(self.recent_transfers) > self.settings.recent_payments_max:
            self.recent_transfers.popitem(last=False)

    def _shard(self, balance_id: str) -> int:
        return shard_of_partition(partition_of(balance_id, self.settings.partitions), self.settings.shards)

    def _peer(self, shard: int):  # type: ignore[no-untyped-def]
        if self._peers is None:
            self._peers = ray_lookup(self.settings.namespace)
        return self._peers(shard_name(shard))

    # -- recovery ---------------------------------------------------------------------------
    async def ready(self) -> int:
        """Recover if needed; returns the current epoch. The gateway polls this."""
        failed = (
            self._recovery is not None
            and self._recovery.done()
            and (self._recovery.cancelled() or self._recovery.exception() is not None)
        )
        if self._recovery is None or failed:
            # A failed recovery (a journal that cannot be written or read just then) is
            # tried again by the next caller, not remembered forever.
            self._recovery = asyncio.get_running_loop().create_task(self._recover())
        await asyncio.shield(self._recovery)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_expired_holds())
        return self.epoch

    async def _recover(self) -> None:
        started = time.perf_counter()
        self._commit(EpochStarted(self.epoch + 1))
        await self.journal.durable()
        open_lists = await asyncio.gather(
            *(self._peer(k).invoke(BalanceShard.fence, self.index, self.epoch) for k in range(self.settings.shards))
        )
        holds: dict[str, list[OpenHold]] = defaultdict(list)
        for open_holds in open_lists:
            for hold in open_holds:
                holds[hold.payment_id].append(hold)
        aborted: list[str] = []
        for payment_id in holds:
            if payment_id in self.unfinished or payment_id in self.recent or payment_id in self.open_holds:
                continue
            hold = await self._hold(payment_id) if is_hold_id(payment_id) else None
            if hold is not None:
                # Captured: its payment is unfinished and posts it below. Voided, expired or
                # refused: release what is still held.
                if hold.status != "captured":
                    await self._void_legs([hold])
                continue
            found = await self.journal.tagged("pay", limit=1, only_id=payment_id)
            if found:
                rec = found[0].record
                assert isinstance(rec, Decided)
                self.unfinished[payment_id] = rec.payment
                self._remember(rec.payment)
                continue
            aborted.append(payment_id)  # presumed abort: it has no decision
        # Released before the abort is journaled: an exchange payment holds on four balances,
        # more than its record names, and a crash in between finds nothing left to abort.
        voids: dict[int, list[HoldRef]] = defaultdict(list)
        for payment_id in aborted:
            for h in holds[payment_id]:
                voids[self._shard(h.balance_id)].append(HoldRef(payment_id, h.balance_id))
        await asyncio.gather(*(call_until_done(self._peer(k), BalanceShard.void, pack(rs)) for k, rs in voids.items()))
        self._journal_aborts(aborted, holds)
        await self.journal.durable()
        redriven = list(self.unfinished.values())
        await self._phase2(redriven)
        event(
            log,
            "recovered",
            actor=self._name,
            epoch=self.epoch,
            records_replayed=self._replayed,
            settled=len(redriven),  # decided (before the restart or aborted just now), posted or voided now
            aborted=len(aborted),
            seconds=round(time.perf_counter() - started, 3),
            **placement(),
        )

    def _journal_aborts(self, aborted: list[str], holds: dict[str, list[OpenHold]]) -> None:
        """`system_failure`/ABORTED_IN_RECOVERY for each payment without a decision; a
        transfer's legs (their holds name it) are aborted together with their transfer, so
        that it reads failed, and a redelivered call answers that instead of running it."""
        now_ms = _now_ms()
        legs_of: dict[str, list[PaymentRecord]] = defaultdict(list)
        for payment_id in aborted:
            event(log, "aborted_in_recovery", logging.WARNING, actor=self._name, payment_id=payment_id)
            hs = holds[payment_id]
            debit = next((h for h in hs if h.side == DEBIT), None)
            credit = next((h for h in hs if h.side != DEBIT), None)
            record = PaymentRecord(
                id=payment_id,
                balance_from=debit.balance_id if debit else "",
                balance_to=credit.balance_id if credit else "",
                amount_minor=hs[0].amount_minor,
                currency=hs[0].currency,
                status=PaymentStatus.SYSTEM_FAILURE,
                reason=ABORTED_IN_RECOVERY,
                created_at_ms=now_ms,
                settled_at_ms=now_ms,
                transfer_id=hs[0].transfer_id,
            )
            if record.transfer_id is None:
                self._commit(Decided(record))
            else:
                legs_of[record.transfer_id].append(record)
        for transfer_id, legs in legs_of.items():
            transfer = TransferRecord(
                id=transfer_id,
                status=PaymentStatus.SYSTEM_FAILURE,
                reason=ABORTED_IN_RECOVERY,
                failed_leg=None,
                legs=[TransferLeg(p.id, p.balance_from, p.balance_to, p.amount_minor, p.currency) for p in legs],
                created_at_ms=now_ms,
                settled_at_ms=now_ms,
            )
            self._commit_together([*(Decided(p) for p in legs), TransferDecided(transfer)])

    # -- idempotency --------------------------------------------------------------------------
    def _remember_key(self, key: str, fingerprint: bytes | None, payment_id: str, created_at_ms: int) -> None:
        self.keys[key] = (fingerprint, payment_id, created_at_ms)
        self.keys.move_to_end(key)
        window_start_ms = _now_ms() - self.settings.idempotency_window_s * 1000
        while self.keys:
            oldest_key, (_, _, oldest_ms) = next(iter(self.keys.items()))
            if oldest_ms >= window_start_ms and len(self.keys) <= self.settings.idempotency_keys_in_memory_max:
                break
            del self.keys[oldest_key]
            if oldest_ms >= window_start_ms:  # evicted while still inside the window
                self._keys_evicted_until_ms = max(self._keys_evicted_until_ms, oldest_ms)

    async def _find_key(self, key: str) -> tuple[bytes | None, str] | None:
        window_start_ms = _now_ms() - self.settings.idempotency_window_s * 1000
        known = self.keys.get(key)
        if known is not None:
            if known[2] >= window_start_ms:
                return known[0], known[1]
            del self.keys[key]  # expired: the key may be used afresh
            return None
        if self._keys_evicted_until_ms < window_start_ms:
            return None  # nothing inside the window was evicted: the key is new
        for stored in await self.journal.tagged(f"k:{key}", limit=1):
            r = stored.record
            if isinstance(r, Decided) and r.payment.created_at_ms >= window_start_ms:
                return r.payment.fingerprint, r.payment.id
            if isinstance(r, HoldPlaced) and r.hold.created_at_ms >= window_start_ms:
                return r.hold.fingerprint, r.hold.id
            if isinstance(r, HoldClosed) and (r.hold.closed_at_ms or 0) >= window_start_ms:
                return r.fingerprint, r.hold.id
            if isinstance(r, TransferDecided) and r.transfer.created_at_ms >= window_start_ms:
                return r.transfer.fingerprint, r.transfer.id
        return None

    # -- payments ---------------------------------------------------------------------------
    async def pay(self, requests: list[PaymentRequest] | bytes) -> list[Outcome] | bytes:
        """Outcomes in request order; packed if the requests came packed."""
        started = time.perf_counter()
        self._paying += 1
        try:
            with self.telemetry.serving():
                outcomes = await self._pay(unpack(requests, list[PaymentRequest]))
        finally:
            self._paying -= 1
        decided = Counter(str(o.payment.status) for o in outcomes if o.payment is not None and not o.replayed)
        for status, count in decided.items():  # one update per status: a Ray metric call is ~10 µs
            self.telemetry.payments.inc(count, {"status": status})
        if decided:  # once per call, not per payment, for the same reason
            self.telemetry.payment_latency_ms.observe((time.perf_counter() - started) * 1000)
        return pack(outcomes) if isinstance(requests, bytes) else outcomes

    async def _pay(self, requests: list[PaymentRequest]) -> list[Outcome]:
        return await self._decide_fresh(requests, self._run, self._pending, self.recent)  # type: ignore[arg-type]

    async def _decide_fresh(
        self,
        requests: list[PaymentRequest] | list[TransferRequest],
        run: Callable[[list[Any]], Coroutine[None, None, list[Any]]],
        pending: dict[str, Any],
        recent: OrderedDict[str, Any],
    ) -> list[Outcome]:
        """Run payments (or transfers) with `run`; a request whose idempotency key was seen
        replays the first outcome (or is refused if its fingerprint differs). Concurrent
        duplicates wait for the one in flight, so a key never makes two."""
        await self.ready()
        loop = asyncio.get_running_loop()
        answers: list[Outcome | str | None] = []  # an outcome, a payment id to replay, or fresh
        fresh: list[PaymentRequest] = []
        for r in requests:
            if r.idempotency_key is not None:
                known = await self._find_key(r.idempotency_key)
                if known is None and r.idempotency_key in self.keys:  # claimed while we looked on disk
                    known = self.keys[r.idempotency_key][:2]
                if known is not None:
                    answers.append(Outcome(conflict=True) if known[0] != r.fingerprint else known[1])
                    continue
            if r.payment_id in recent or r.payment_id in self._inflight:
                answers.append(r.payment_id)  # a redelivered call: answer with the first outcome
                continue
            self._inflight[r.payment_id] = loop.create_future()
            pending[r.payment_id] = r
            if r.idempotency_key is not None:
                self._remember_key(r.idempotency_key, r.fingerprint, r.payment_id, r.created_at_ms)
            fresh.append(r)
            answers.append(None)
        if fresh:
            results: list[PaymentRecord | TransferRecord | None] = [None] * len(fresh)
            try:
                results = await run(fresh)
            finally:
                for r, result in zip(fresh, results, strict=True):
                    if undecided(result) and r.idempotency_key is not None:
                        self.keys.pop(r.idempotency_key, None)  # nothing was decided: the key is free
                    pending.pop(r.payment_id, None)
                    fut = self._inflight.pop(r.payment_id)
                    known = recent.get(r.payment_id)
                    if known is not None and not undecided(known):
                        fut.set_result(known)
                    else:
                        fut.cancel()
            decided = iter(results)
            answers = [decided_outcome(next(decided)) if a is None else a for a in answers]
        return [a if isinstance(a, Outcome) else await self._replay(a) for a in answers]  # type: ignore[arg-type]

    async def _replay(self, some_id: str) -> Outcome:
        """The first outcome of a payment or hold operation an idempotency key points at."""
        inflight = self._inflight.get(some_id)
        if inflight is not None:
            try:
                await asyncio.shield(inflight)
            except asyncio.CancelledError:
                if inflight.cancelled():  # the first attempt was aborted undecided
                    return Outcome(refused="unavailable")
                raise
        if is_hold_id(some_id):
            hold = await self._hold(some_id)
            assert hold is not None, f"an idempotency key points at unknown hold {some_id}"
            return Outcome(hold=hold, replayed=True)
        if is_transfer_id(some_id):
            transfer = await self.get_transfer(some_id)
            assert transfer is not None, f"an idempotency key points at unknown transfer {some_id}"
            if undecided(transfer):
                return Outcome(refused="unavailable")
            return Outcome(transfer=transfer, replayed=True)
        payment = await self.get_payment(some_id)
        assert payment is not None, f"an idempotency key points at unknown payment {some_id}"
        if undecided(payment):  # a redelivered call of one answered 503: 503 again
            return Outcome(refused="unavailable")
        return Outcome(payment, replayed=True)

    async def _claim_key(self, key: str | None, fingerprint: bytes | None) -> Outcome | None:
        """None if `key` is new (or absent); else the replay or the conflict."""
        if key is None:
            return None
        known = await self._find_key(key)
        if known is None and key in self.keys:  # claimed while we looked on disk
            known = self.keys[key][:2]
        if known is None:
            return None
        return Outcome(conflict=True) if known[0] != fingerprint else await self._replay(known[1])

    async def _phase1(
        self, legs: list[tuple[str, str, str, int, str]], transfer_of: dict[str, str] | None = None
    ) -> dict[tuple[str, str], Check]:
        """Reserve on the paying side and prepare the receiving side of every
        (id, from, to, amount, currency), one call per shard; each leg's check. The holds
        of a transfer's legs (`transfer_of`: leg id -> transfer id) name their transfer."""
        epoch = self.epoch
        debits: dict[int, list[SideRequest]] = defaultdict(list)
        credits: dict[int, list[SideRequest]] = defaultdict(list)
        for hold_id, balance_from, balance_to, amount_minor, currency in legs:
            transfer_id = None if transfer_of is None else transfer_of[hold_id]
            debits[self._shard(balance_from)].append(
                SideRequest(hold_id, balance_from, amount_minor, currency, transfer_id)
            )
            credits[self._shard(balance_to)].append(
                SideRequest(hold_id, balance_to, amount_minor, currency, transfer_id)
            )
        shards = sorted(debits.keys() | credits.keys())  # one call per shard carries both sides
        carried = {k: self._owed.pop(k, None) for k in shards}
        try:
            replies = await asyncio.gather(
                *(
                    self._peer(k).invoke(
                        BalanceShard.hold, self.index, epoch, pack(debits[k]), pack(credits[k]), *_packed(carried[k])
                    )
                    for k in shards
                ),
                return_exceptions=True,
            )
        except BaseException:  # cancelled, or no call went out: what was carried goes alone
            for k, owed in carried.items():
                if owed is not None:
                    self._spawn(self._deliver(k, owed))
            raise
        for k, reply in zip(shards, replies, strict=True):
            owed = carried[k]
            if owed is None:
                continue
            if isinstance(reply, BaseException):  # whether it was written is unknown: send it again
                self._spawn(self._deliver(k, owed))
                continue
            if not reply[2]:
                self._confirmed(owed.payments)
                continue
            refs = [*owed.posts, *owed.voids]
            again = owed.only([refs[n] for n in reply[2]])  # on partitions that could not write
            self._confirmed([p for p in owed.payments if p not in again.payments])
            self._spawn(self._deliver(k, again))
        codes: dict[tuple[str, str], Check] = {}
        for k, reply in zip(shards, replies, strict=True):
            for side, items in enumerate((debits[k], credits[k])):
                for n, item in enumerate(items):
                    # A shard that raised: refuse the leg. Legs it may have held before
                    # failing stay reserved until this coordinator's next recovery, whose
                    # fence finds them undecided and releases them.
                    code = Check.UNAVAILABLE if isinstance(reply, BaseException) else Check(reply[side][n])
                    codes[(item.payment_id, item.balance_id)] = code
        return codes

    async def _run(self, requests: list[PaymentRequest]) -> list[PaymentRecord | None]:
        """Decide and settle. A payment a shard could not take part in (its journal is
        unwritable) is aborted: nothing moves, the caller answers 503 so the client retries,
        and it is recorded as `system_failure` (JOURNAL_UNAVAILABLE, without its key), so
        that a client already told 202 finds it final instead of unknown."""
        if not self.journal.writable:
            raise JournalUnavailable("coordinator journal is not writable")
        expired, no_quote = await self._claim_quotes(requests)
        live = [r for r in requests if r.payment_id not in expired] if expired else requests
        codes = await self._phase1([leg for r in live for leg in _legs(r)])
        unavailable = {r.payment_id: r for r in live if Check.UNAVAILABLE in _checks(r, codes)}
        await self._release_held(list(unavailable.values()), codes)
        await self._release_quotes(list(unavailable.values()))
        unavailable.update(no_quote)
        settled_at_ms = _now_ms()
        decided = []
        for r in requests:
            if r.payment_id in unavailable:
                status, reason = PaymentStatus.SYSTEM_FAILURE, JOURNAL_UNAVAILABLE
                r = msgspec.structs.replace(r, idempotency_key=None, fingerprint=None)
            else:
                status, reason = _decide_request(r, codes, expired)
            payment = decided_record(r, status, reason, settled_at_ms)
            self._commit(Decided(payment))
            decided.append(payment)
        await self.journal.durable()
        self._owe_phase2(decided)
        by_id = {p.id: p for p in decided}
        return [by_id.get(r.payment_id) for r in requests]

    async def _claim_quotes(self, requests: list[PaymentRequest]) -> tuple[set[str], dict[str, PaymentRequest]]:
        """Use the quotes of exchange payments (the registry journals each use once): the
        ids of those whose quote expired or was used already, and those the registry could
        not answer for (aborted as if a journal were down)."""
        quoted = [r for r in requests if r.fx is not None]
        if not quoted:
            return set(), {}
        if self._peers is None:
            self._peers = ray_lookup(self.settings.namespace)
        try:
            used = await self._peers(REGISTRY_NAME).invoke(
                Registry.use_quotes,
                [(r.fx.id, r.payment_id) for r in quoted],
                _now_ms(),  # type: ignore[union-attr]
            )
        except Exception:  # a journal down, the registry restarting: none was used
            return {r.payment_id for r in quoted}, {r.payment_id: r for r in quoted}
        return {r.payment_id for r, ok in zip(quoted, used, strict=True) if not ok}, {}

    async def _release_quotes(self, aborted: list[PaymentRequest]) -> None:
        """An exchange payment answered 503 gives its quote back, so that its retry (same
        key, a new payment id) may use it. If the registry cannot take it now, the retry
        ends quote_expired: a final answer, with nothing moved."""
        uses = [(r.fx.id, r.payment_id) for r in aborted if r.fx is not None]
        if uses:
            assert self._peers is not None
            with contextlib.suppress(Exception):
                await self._peers(REGISTRY_NAME).invoke(Registry.release_quotes, uses)

    async def _release_held(self, aborted: list[PaymentRequest], codes: dict[tuple[str, str], Check]) -> None:
        """Void the legs of aborted payments that did hold, before the abort is answered."""
        voids: dict[int, list[HoldRef]] = defaultdict(list)
        for r in aborted:
            for balance_id in payment_balances(r):
                if codes.get((r.payment_id, balance_id)) == Check.OK:
                    voids[self._shard(balance_id)].append(HoldRef(r.payment_id, balance_id))
        await asyncio.gather(
            *(call_until_done(self._peer(k), BalanceShard.void, pack(refs)) for k, refs in voids.items())
        )

    # -- transfers ------------------------------------------------------------------------------
    async def transfer(self, requests: list[TransferRequest] | bytes) -> list[Outcome] | bytes:
        """Outcomes in request order (packed if the requests came packed). A batch of
        transfers shares one phase-one call per shard, as payments do."""
        started = time.perf_counter()
        self._paying += 1
        try:
            with self.telemetry.serving():
                transfers = unpack(requests, list[TransferRequest])
                outcomes = await self._decide_fresh(
                    transfers, self._run_transfers, self._pending_transfers, self.recent_transfers
                )
        finally:
            self._paying -= 1
        legs = Counter()
        for o in outcomes:
            if o.transfer is not None and not o.replayed:
                legs[str(o.transfer.status)] += len(o.transfer.legs)
        for status, count in legs.items():  # each leg is a payment
            self.telemetry.payments.inc(count, {"status": status})
        if legs:
            self.telemetry.payment_latency_ms.observe((time.perf_counter() - started) * 1000)
        return pack(outcomes) if isinstance(requests, bytes) else outcomes

    async def _run_transfers(self, requests: list[TransferRequest]) -> list[TransferRecord]:
        """Reserve and prepare every leg of every transfer (a balance in several legs holds
        once per leg, so its debits add up against what it has), decide each transfer on
        all its legs, journal its legs' decisions with it in one frame, then post or void
        them as payments. As in `_run`, a transfer a shard could not take part in is aborted
        and recorded as `system_failure`/JOURNAL_UNAVAILABLE."""
        if not self.journal.writable:
            raise JournalUnavailable("coordinator journal is not writable")
        expired, no_quote = await self._claim_quotes([r for t in requests for r in t.legs])
        codes = await self._phase1(
            [leg for t in requests for r in t.legs if r.payment_id not in expired for leg in _legs(r)],
            {r.payment_id: t.transfer_id for t in requests for r in t.legs},
        )

        def unavailable_leg(r: PaymentRequest) -> bool:
            if r.payment_id in expired:  # not held: unavailable only if its quote could not be claimed
                return r.payment_id in no_quote
            return Check.UNAVAILABLE in _checks(r, codes)

        unavailable = {t.transfer_id for t in requests if any(unavailable_leg(r) for r in t.legs)}
        aborted = [r for t in requests if t.transfer_id in unavailable for r in t.legs]
        await self._release_held(aborted, codes)
        await self._release_quotes([r for r in aborted if r.payment_id not in expired])
        settled_at_ms = _now_ms()
        decided: list[TransferRecord] = []
        legs: list[PaymentRecord] = []
        for t in requests:
            if t.transfer_id in unavailable:
                status, reason, failed_leg = PaymentStatus.SYSTEM_FAILURE, JOURNAL_UNAVAILABLE, None
                t = msgspec.structs.replace(t, idempotency_key=None, fingerprint=None)
            else:
                status, reason, failed_leg = decide_legs([_decide_request(r, codes, expired) for r in t.legs])
            records = [decided_record(r, status, reason, settled_at_ms, t) for r in t.legs]
            transfer = msgspec.structs.replace(
                pending_transfer(t),
                status=status,
                reason=reason,
                failed_leg=failed_leg,
                settled_at_ms=settled_at_ms,
                fingerprint=t.fingerprint,
            )
            self._commit_together([*(Decided(p) for p in records), TransferDecided(transfer)])
            decided.append(transfer)
            legs += records
        await self.journal.durable()
        self._owe_phase2(legs)
        return decided

    async def get_transfer(self, transfer_id: str) -> TransferRecord | None:
        await self.ready()
        known = self.recent_transfers.get(transfer_id)
        if known is not None:
            return known
        pending = self._pending_transfers.get(transfer_id)
        if pending is not None:
            return pending_transfer(pending)
        found = await self.journal.tagged("tr", limit=1, only_id=transfer_id)
        return found[0].record.transfer if found else None  # type: ignore[union-attr]

    async def list_transfers(
        self, balance_id: str | None, limit: int, before_id: str | None, after_id: str | None, ascending: bool
    ) -> list[TransferRecord]:
        """Transfers decided here, all or those with a leg on `balance_id`, in id order."""
        await self.journal.durable()
        found = await self.journal.tagged(
            f"tb:{balance_id}" if balance_id else "tr",
            limit=limit,
            before_id=before_id,
            after_id=after_id,
            ascending=ascending,
        )
        return [s.record.transfer for s in found if isinstance(s.record, TransferDecided)]

    def _legs_by_shard(self, payments: list[PaymentRecord]) -> dict[int, Owed]:
        """Phase two of decided payments, grouped by the shard of each leg: post if the
        payment succeeded, else void. Counts the shards each payment now waits on."""
        by_shard: dict[int, Owed] = {}
        for p in payments:
            shards: set[int] = set()
            for balance_id in payment_balances(p) if p.fx is not None else (p.balance_from, p.balance_to):
                if not balance_id:  # aborted in recovery, one side never held
                    continue
                k = self._shard(balance_id)
                owed = by_shard.get(k)
                if owed is None:
                    owed = by_shard[k] = Owed()
                ref = HoldRef(p.id, balance_id, p.amount_minor if p.hold_id else None, p.hold_id, p.capture_seq)
                (owed.posts if p.status == PaymentStatus.SUCCESS else owed.voids).append(ref)
                if k not in shards:
                    shards.add(k)
                    owed.payments.append(p.id)
            assert shards, f"decided payment {p.id} has no leg"
            self._legs_left[p.id] = len(shards)
        return by_shard

    def _owe_phase2(self, payments: list[PaymentRecord]) -> None:
        """Queue phase two of decided payments for their shards (see the module doc)."""
        for k, legs in self._legs_by_shard(payments).items():
            owed = self._owed.get(k)
            if owed is None:
                self._owed[k] = legs
            else:
                owed.posts += legs.posts
                owed.voids += legs.voids
                owed.payments += legs.payments
        if self._owed and self._carry_timer is None and not self._closed:
            # Alone (no other pay call in progress), nothing will carry it soon: send at
            # once, so that a client reading right after its payment does not wait.
            delay_s = self.settings.phase2_carry_ms / 1000 if self._paying > 1 else 0.0
            self._carry_timer = asyncio.get_running_loop().call_later(delay_s, self._send_owed)

    def _send_owed(self) -> None:
        """What no phase-one call has carried goes on its own."""
        self._carry_timer = None
        owed, self._owed = self._owed, {}
        for k, o in owed.items():
            self._spawn(self._deliver(k, o))

    def _spawn(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _deliver(self, shard: int, owed: Owed) -> None:
        await call_until_done(self._peer(shard), BalanceShard.settle, *_packed(owed))
        self._confirmed(owed.payments)

    def _confirmed(self, payment_ids: list[str]) -> None:
        """A shard has made these payments' legs durable; once all their shards have, they
        are complete (journaled with the next flush; only recovery work depends on it).
        After close, the next start's recovery finds them posted and completes them."""
        completed = []
        for payment_id in payment_ids:
            left = self._legs_left[payment_id] - 1
            if left:
                self._legs_left[payment_id] = left
                continue
            del self._legs_left[payment_id]
            if payment_id in self.unfinished:
                completed.append(payment_id)
        if completed and not self._closed:
            self._commit(Completions(completed))

    async def finish_phase2(self) -> int:
        """Send every owed phase two now and wait until the shards confirm it, and for the
        pay calls in progress to do the same (a clean stop, so that the journals it leaves
        show every payment settled); returns how many payments are still unfinished.
        Callers bound the wait: under steady traffic it lasts as long as the traffic."""
        while True:
            if self._carry_timer is not None:
                self._carry_timer.cancel()
            self._send_owed()
            if self._sending:
                await asyncio.gather(*list(self._sending), return_exceptions=True)
            elif self._paying:
                await asyncio.sleep(0.005)
            else:
                break
        await self.journal.durable()
        return len(self.unfinished)

    async def _phase2(self, payments: list[PaymentRecord]) -> None:
        """Phase two now, awaited (recovery, captures): each shard's legs in one call."""
        await asyncio.gather(*(self._deliver(k, legs) for k, legs in self._legs_by_shard(payments).items()))

    # -- holds ------------------------------------------------------------------------------
    def _remember_hold(self, hold: HoldRecord) -> None:
        if hold.status == HOLD_HELD:
            self.open_holds[hold.id] = hold
        else:
            self.open_holds.pop(hold.id, None)
        self.recent_holds[hold.id] = hold
        self.recent_holds.move_to_end(hold.id)
        while len(self.recent_holds) > self.settings.recent_payments_max:
            self.recent_holds.popitem(last=False)  # open ones stay in open_holds

    async def _hold(self, hold_id: str) -> HoldRecord | None:
        known = self.open_holds.get(hold_id) or self.recent_holds.get(hold_id)
        if known is not None:
            return known
        for kind in ("hc", "hp"):  # closed, else as placed
            found = await self.journal.query(hold_id, kind, limit=1)
            if found:
                return found[0].record.hold  # type: ignore[union-attr]
        return None

    async def _void_legs(self, holds: list[HoldRecord]) -> None:
        refs: dict[int, list[HoldRef]] = defaultdict(list)
        for h in holds:
            for balance_id in (h.balance_from, h.balance_to):
                refs[self._shard(balance_id)].append(HoldRef(h.id, balance_id))
        await asyncio.gather(*(call_until_done(self._peer(k), BalanceShard.void, pack(rs)) for k, rs in refs.items()))

    async def place_hold(self, r: HoldRequest) -> Outcome:
        await self.ready()
        claimed = await self._claim_key(r.idempotency_key, r.fingerprint)
        if claimed is not None:
            return claimed
        if r.hold_id in self.recent_holds or r.hold_id in self._inflight:
            return await self._replay(r.hold_id)  # a redelivered call
        if not self.journal.writable:
            raise JournalUnavailable("coordinator journal is not writable")
        done = self._inflight[r.hold_id] = asyncio.get_running_loop().create_future()
        if r.idempotency_key is not None:
            self._remember_key(r.idempotency_key, r.fingerprint, r.hold_id, r.created_at_ms)
        try:
            codes = await self._phase1([(r.hold_id, r.balance_from, r.balance_to, r.amount_minor, r.currency)])
            legs = (codes[(r.hold_id, r.balance_from)], codes[(r.hold_id, r.balance_to)])
            if Check.UNAVAILABLE in legs:  # as for payments: abort undecided, answer 503
                held = [b for b, c in zip((r.balance_from, r.balance_to), legs, strict=True) if c == Check.OK]
                await asyncio.gather(
                    *(
                        call_until_done(self._peer(self._shard(b)), BalanceShard.void, pack([HoldRef(r.hold_id, b)]))
                        for b in held
                    )
                )
                if r.idempotency_key is not None:
                    self.keys.pop(r.idempotency_key, None)
                return Outcome(refused="unavailable")
            status, reason = decide(*legs)
            hold = HoldRecord(
                id=r.hold_id,
                balance_from=r.balance_from,
                balance_to=r.balance_to,
                amount_minor=r.amount_minor,
                currency=r.currency,
                status=HOLD_HELD if status == PaymentStatus.SUCCESS else str(status),
                reason=reason,
                created_at_ms=r.created_at_ms,
                expires_at_ms=r.expires_at_ms,
                closed_at_ms=None if status == PaymentStatus.SUCCESS else _now_ms(),
                idempotency_key=r.idempotency_key,
                fingerprint=r.fingerprint,
                description=r.description,
                metadata=r.metadata,
            )
            self._commit(HoldPlaced(hold))
            await self.journal.durable()
            if hold.status != HOLD_HELD:
                await self._void_legs([hold])
            return Outcome(hold=hold)
        except BaseException:
            if r.idempotency_key is not None and r.hold_id not in self.recent_holds:
                self.keys.pop(r.idempotency_key, None)
            raise
        finally:
            del self._inflight[r.hold_id]
            done.cancel()

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
        """Capture `amount_minor` of what the hold still holds (default: all of it). A final
        capture (or one of all that is left) releases the rest and closes the hold; one that
        is not keeps the rest held for the next capture. Captures of a hold run one at a time."""
        await self.ready()
        async with self._one_at_a_time(hold_id):
            # Inside the turn: a retry that waited for its first attempt finds that one's key.
            claimed = await self._claim_key(key, fingerprint)
            if claimed is not None:
                return claimed
            if payment_id in self.recent or payment_id in self._inflight:
                return await self._replay(payment_id)
            return await self._capture(hold_id, amount_minor, payment_id, created_at_ms, key, fingerprint, final)

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self, some_id: str) -> AsyncIterator[None]:
        """Serialise what `some_id` must not see interleaved (its refunds, its captures)."""
        turn = self._turns.setdefault(some_id, _Turns())
        turn.users += 1
        try:
            async with turn.lock:
                yield
        finally:
            turn.users -= 1
            if not turn.users:  # nobody holds it or waits for it: forget it
                del self._turns[some_id]

    async def _capture(
        self,
        hold_id: str,
        amount_minor: int | None,
        payment_id: str,
        created_at_ms: int,
        key: str | None,
        fingerprint: bytes | None,
        final: bool,
    ) -> Outcome:
        await self._expire_due(hold_id)
        hold = self.open_holds.get(hold_id)
        if hold is None:  # from here to the commit, no await: one capture or void wins
            known = await self._hold(hold_id)
            return Outcome(hold=known, refused="not_found" if known is None else "not_held")
        left = hold.amount_minor - (hold.captured_minor or 0)
        amount = left if amount_minor is None else amount_minor
        if not 0 < amount <= left:
            return Outcome(hold=hold, refused="amount_exceeds_hold")
        if not self.journal.writable:
            raise JournalUnavailable("coordinator journal is not writable")
        final = final or amount == left
        captures = [*(hold.captures or ()), payment_id]
        now_ms = _now_ms()
        capture = PaymentRecord(
            id=payment_id,
            balance_from=hold.balance_from,
            balance_to=hold.balance_to,
            amount_minor=amount,
            currency=hold.currency,
            status=PaymentStatus.SUCCESS,
            reason=None,
            created_at_ms=created_at_ms,
            settled_at_ms=now_ms,
            description=hold.description if hold.description is not None else "capture",
            metadata=hold.metadata,
            idempotency_key=key,
            fingerprint=fingerprint,
            hold_id=hold_id,
            capture_seq=None if final else len(captures),
        )
        after = msgspec.structs.replace(
            hold,
            status="captured" if final else HOLD_HELD,
            closed_at_ms=now_ms if final else None,
            captured_minor=(hold.captured_minor or 0) + amount,
            payment_id=payment_id,
            captures=captures,
        )
        done = self._inflight[payment_id] = asyncio.get_running_loop().create_future()
        try:
            self._commit_together([Decided(capture), HoldClosed(after, at_ms=now_ms)])
            await self.journal.durable()
            await self._phase2([capture])
            return Outcome(payment=capture, hold=after)
        finally:
            del self._inflight[payment_id]
            done.cancel()

    async def void_hold(self, hold_id: str, key: str | None, fingerprint: bytes | None) -> Outcome:
        await self.ready()
        async with self._one_at_a_time(hold_id):  # after a capture in flight has posted
            claimed = await self._claim_key(key, fingerprint)
            if claimed is not None:
                return claimed
            return await self._void(hold_id, key, fingerprint)

    async def _void(self, hold_id: str, key: str | None, fingerprint: bytes | None) -> Outcome:
        await self._expire_due(hold_id)
        hold = self.open_holds.get(hold_id)
        if hold is None:
            known = await self._hold(hold_id)
            return Outcome(hold=known, refused="not_found" if known is None else "not_held")
        if not self.journal.writable:
            raise JournalUnavailable("coordinator journal is not writable")
        closed = msgspec.structs.replace(hold, status="voided", closed_at_ms=_now_ms())
        self._commit(HoldClosed(closed, key, fingerprint, closed.closed_at_ms or 0))
        await self.journal.durable()
        await self._void_legs([closed])
        return Outcome(hold=closed)

    async def get_hold(self, hold_id: str) -> HoldRecord | None:
        await self.ready()
        await self._expire_due()
        return await self._hold(hold_id)

    async def _expire_due(self, mine: str | None = None) -> None:
        """Expire the holds past their time, but not one being captured or voided (its
        partial post may still be on its way), unless it is `mine`, the caller's."""
        now_ms = _now_ms()
        due = [
            h
            for h in self.open_holds.values()
            if h.expires_at_ms <= now_ms and (h.id not in self._turns or h.id == mine)
        ]
        if not due or not self.journal.writable:
            return
        expired = [msgspec.structs.replace(h, status="expired", closed_at_ms=now_ms) for h in due]
        for h in expired:
            self._commit(HoldClosed(h, at_ms=now_ms))
        await self.journal.durable()
        await self._void_legs(expired)

    async def _sweep_expired_holds(self) -> None:
        while True:
            await asyncio.sleep(self.settings.hold_sweep_interval_ms / 1000)
            try:
                await self._expire_due()
            except Exception:  # the next sweep tries again; nothing is lost meanwhile
                continue

    async def activity(self) -> list[Minute]:
        """The payments this coordinator decided per minute, over the last hour."""
        return self._activity.minutes(_now_ms())

    async def get_payment(self, payment_id: str) -> PaymentRecord | None:
        await self.ready()
        known = self.recent.get(payment_id)
        if known is not None:
            return known
        pending = self._pending.get(payment_id)
        if pending is not None:
            return pending_record(pending)
        found = await self.journal.tagged("pay", limit=1, only_id=payment_id)
        if not found:
            return None
        rec = found[0].record
        assert isinstance(rec, Decided)
        return rec.payment

    async def list_payments(self, q: PaymentQuery) -> list[PaymentRecord]:
        """Payments this coordinator decided (or, for `pending`, has in flight), in id
        (creation time) order as `q` asks."""
        await self.journal.durable()
        if q.status == PaymentStatus.PENDING:
            found = [pending_record(r) for r in self._pending.values() if _matches(q, r.payment_id, r)]
            found.sort(key=lambda p: p.id, reverse=not q.ascending)
            return found[: q.limit]
        status_tag = f"s:{q.status}" if q.status else None
        if q.idempotency_key is not None:  # at most a few records: filter the rest here
            tag, also = f"k:{q.idempotency_key}", None
        elif q.balance_id:
            tag, also = f"b:{q.balance_id}", status_tag
        else:
            tag, also = status_tag or "pay", None
        # A key tags its payment, or a hold and its captures: a few records, filtered here.
        limit = q.limit + KEY_RECORDS_MAX if q.idempotency_key is not None else q.limit
        found = await self.journal.tagged(
            tag, limit=limit, before_id=q.before_id, after_id=q.after_id, also_tag=also, ascending=q.ascending
        )
        out = [
            s.record.payment
            for s in found
            if isinstance(s.record, Decided) and _matches(q, s.record.payment.id, s.record.payment)
        ]
        return out[: q.limit]

    # -- refunds ------------------------------------------------------------------------------
    async def refund(self, r: PaymentRequest) -> Outcome:
        """Give back all or part of a successful payment this coordinator decided: a payment
        from its receiver to its payer (`r.amount_minor` 0: whatever is left). Refunds of one
        payment run one at a time, so their successful sum never exceeds it; a refused one
        (the receiver spent the money) counts for nothing."""
        assert r.refund_of is not None
        await self.ready()
        async with self._one_at_a_time(r.refund_of):
            if r.idempotency_key is not None and (
                r.idempotency_key in self.keys or await self._find_key(r.idempotency_key) is not None
            ):
                return (await self._pay([r]))[0]  # a retry: its first outcome, whatever it was
            original = await self.get_payment(r.refund_of)
            if (
                original is None
                or original.status != PaymentStatus.SUCCESS
                or original.refund_of is not None
                or original.fx is not None  # given back by an exchange the other way, at a new quote
            ):
                return Outcome(payment=original, refused="not_refundable")
            refunds = await self.refunds_of(r.refund_of)
            left = original.amount_minor - sum(p.amount_minor for p in refunds if p.status == PaymentStatus.SUCCESS)
            amount = r.amount_minor or left
            if amount <= 0 or amount > left or len(refunds) >= REFUNDS_PER_PAYMENT_MAX:
                return Outcome(payment=original, refused="refund_exceeds_payment")
            return (await self._pay([msgspec.structs.replace(r, amount_minor=amount)]))[0]

    async def refunds_of(self, payment_id: str) -> list[PaymentRecord]:
        """The refunds decided for a payment, newest first."""
        await self.journal.durable()
        found = await self.journal.tagged(f"rf:{payment_id}", limit=REFUNDS_PER_PAYMENT_MAX + 1)
        return [s.record.payment for s in found if isinstance(s.record, Decided)]

    async def list_holds(
        self,
        balance_id: str | None,
        status: str | None,
        limit: int,
        before_id: str | None,
        after_id: str | None,
        ascending: bool,
    ) -> list[HoldRecord]:
        """Holds placed here, by balance (either side) and current status, in id order. A
        filter on another status than `held` pages through the holds placed (scanning
        history in proportion to how many do not match)."""
        await self.ready()
        await self._expire_due()
        if status == HOLD_HELD:  # the ones still held are all in memory: no history to scan
            held = sorted(
                (
                    h
                    for h in self.open_holds.values()
                    if (balance_id is None or balance_id in (h.balance_from, h.balance_to))
                    and (before_id is None or h.id < before_id)
                    and (after_id is None or h.id > after_id)
                ),
                key=lambda h: h.id,
                reverse=not ascending,
            )
            return held[:limit]
        tag = f"hb:{balance_id}" if balance_id else "holds"
        out: list[HoldRecord] = []
        while len(out) < limit:
            found = await self.journal.tagged(
                tag, limit=limit, before_id=before_id, after_id=after_id, ascending=ascending
            )
            for s in found:
                placed = s.record.hold  # type: ignore[union-attr]
                now = await self._hold(placed.id)
                if now is not None and (status is None or now.status == status):
                    out.append(now)
            if len(found) < limit:
                break
            last = found[-1].record.hold.id  # type: ignore[union-attr]
            before_id, after_id = (before_id, last) if ascending else (last, after_id)
        return out[:limit]

    async def stats(self) -> dict[str, object]:
        await self.ready()
        return {"coordinator": self.index, "epoch": self.epoch, "unfinished": len(self.unfinished), **placement()}

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.finish_phase2(), PHASE2_ON_CLOSE_WAIT_S)
        except Exception:  # the journal or a shard is down: the next start re-drives what is left
            pass
        self._closed = True  # from here nothing is journaled or sent
        if self._carry_timer is not None:
            self._carry_timer.cancel()
        for task in self._sending:
            task.cancel()
        if self._snapshotting is not None:
            await asyncio.gather(self._snapshotting, return_exceptions=True)  # the journal closes regardless
        await self.journal.close()
