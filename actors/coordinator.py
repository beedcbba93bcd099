"""PaymentCoordinator: moves money between two balances with reserve-then-post.

    phase 1   reserve(from) ‖ prepare(to)        each shard journals its hold first
    decide    Decided(payment) journaled         the commit point
    phase 2   post ‖ post   or   void ‖ void     idempotent, re-driven until done
    reply     after phase 2 is durable, so a following read sees the payment

Recovery (presumed abort): a new incarnation journals a higher epoch, fences every shard
(older-epoch reserves are refused from then on) and collects the holds it left open. A hold
whose payment has a decision is driven to it; one without is aborted (a `system_failure`
decision) and voided. Calls are batched: one reserve/prepare/post/void call per shard per
batch of payments.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, defaultdict

import msgspec

from actors.peers import PeerLookup, call_until_done, ray_lookup
from actors.settings import Settings
from actors.topology import partition_of, shard_name, shard_of_partition
from journal import Journal, JournalUnavailable, SqliteJournal
from ledger.book import DEBIT, OpenHold
from ledger.messages import HoldRef, PaymentRequest, SideRequest
from ledger.records import Completed, Decided, EpochStarted, PaymentRecord, Record
from ledger.results import Check, PaymentStatus, decide

ABORTED_IN_RECOVERY = "aborted_in_recovery"


def coordinator_journal_path(settings: Settings, index: int) -> str:
    return str(settings.data_path / "coordinators" / f"c-{index:03d}.sqlite")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class PayOutcome(msgspec.Struct, frozen=True, array_like=True):
    payment: PaymentRecord | None
    replayed: bool = False  # an idempotency key answered with the first outcome
    conflict: bool = False  # the key was used before with a different request


def _pending_record(r: PaymentRequest) -> PaymentRecord:
    return PaymentRecord(
        id=r.payment_id,
        balance_from=r.balance_from,
        balance_to=r.balance_to,
        amount_minor=r.amount_minor,
        currency=r.currency,
        status=PaymentStatus.PENDING,
        reason=None,
        created_at_ms=r.created_at_ms,
        settled_at_ms=None,
        description=r.description,
        metadata=r.metadata,
    )


class PaymentCoordinator:
    def __init__(
        self, settings: Settings, index: int, peers: PeerLookup | None = None, journal: Journal | None = None
    ) -> None:
        self.settings = settings
        self.index = index
        self._peers = peers
        self.journal = journal or SqliteJournal(
            coordinator_journal_path(settings, index), batch_rows_max=settings.journal_batch_rows_max
        )
        self.epoch = 0
        self.unfinished: dict[str, PaymentRecord] = {}  # decided, phase 2 not yet durable
        self.recent: OrderedDict[str, PaymentRecord] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[PaymentRecord]] = {}
        self._pending: dict[str, PaymentRequest] = {}  # in flight, shown as `pending`
        self.keys: OrderedDict[str, tuple[bytes | None, str, int]] = OrderedDict()
        self._keys_evicted_until_ms = 0  # newest creation time of a key dropped inside the window
        self._recovery: asyncio.Task[None] | None = None
        for stored in self.journal.load().records:
            self._apply(stored.record)

    # -- state ------------------------------------------------------------------------------
    def _apply(self, record: Record) -> None:
        if isinstance(record, Decided):
            p = record.payment
            self.unfinished[p.id] = p
            self._remember(p)
            if p.idempotency_key is not None:
                self._remember_key(p.idempotency_key, p.fingerprint, p.id, p.created_at_ms)
        elif isinstance(record, Completed):
            self.unfinished.pop(record.payment_id, None)
        elif isinstance(record, EpochStarted):
            assert record.epoch > self.epoch, "epochs only grow"
            self.epoch = record.epoch
        else:
            raise AssertionError(f"not a coordinator record: {record!r}")

    def _commit(self, record: Record) -> None:
        self.journal.append(record)
        self._apply(record)

    def _remember(self, payment: PaymentRecord) -> None:
        self.recent[payment.id] = payment
        self.recent.move_to_end(payment.id)
        while len(self.recent) > self.settings.recent_payments_max:
            self.recent.popitem(last=False)

    def _shard(self, balance_id: str) -> int:
        return shard_of_partition(partition_of(balance_id, self.settings.partitions), self.settings.shards)

    def _peer(self, shard: int):  # type: ignore[no-untyped-def]
        if self._peers is None:
            self._peers = ray_lookup(self.settings.namespace)
        return self._peers(shard_name(shard))

    # -- recovery ---------------------------------------------------------------------------
    async def ready(self) -> int:
        """Recover if needed; returns the current epoch. The gateway polls this."""
        if self._recovery is None:
            self._recovery = asyncio.get_running_loop().create_task(self._recover())
        await asyncio.shield(self._recovery)
        return self.epoch

    async def _recover(self) -> None:
        self._commit(EpochStarted(self.epoch + 1))
        await self.journal.durable()
        open_lists = await asyncio.gather(
            *(self._peer(k).call("fence", self.index, self.epoch) for k in range(self.settings.shards))
        )
        holds: dict[str, list[OpenHold]] = defaultdict(list)
        for open_holds in open_lists:
            for hold in open_holds:
                holds[hold.payment_id].append(hold)
        now_ms = _now_ms()
        for payment_id, hs in holds.items():
            if payment_id in self.unfinished or payment_id in self.recent:
                continue
            found = await self.journal.query(payment_id, "de", limit=1)
            if found:
                rec = found[0].record
                assert isinstance(rec, Decided)
                self.unfinished[payment_id] = rec.payment
                self._remember(rec.payment)
                continue
            # Presumed abort: nobody was told anything about this payment.
            debit = next((h for h in hs if h.side == DEBIT), None)
            credit = next((h for h in hs if h.side != DEBIT), None)
            self._commit(
                Decided(
                    PaymentRecord(
                        id=payment_id,
                        balance_from=debit.balance_id if debit else "",
                        balance_to=credit.balance_id if credit else "",
                        amount_minor=hs[0].amount_minor,
                        currency=hs[0].currency,
                        status=PaymentStatus.SYSTEM_FAILURE,
                        reason=ABORTED_IN_RECOVERY,
                        created_at_ms=now_ms,
                        settled_at_ms=now_ms,
                    )
                )
            )
        await self.journal.durable()
        await self._phase2(list(self.unfinished.values()))

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
            return (known[0], known[1]) if known[2] >= window_start_ms else None
        if self._keys_evicted_until_ms < window_start_ms:
            return None  # nothing inside the window was evicted: the key is new
        found = await self.journal.tagged(f"k:{key}", limit=1)
        for stored in found:
            assert isinstance(stored.record, Decided)
            p = stored.record.payment
            if p.created_at_ms >= window_start_ms:
                return p.fingerprint, p.id
        return None

    # -- payments ---------------------------------------------------------------------------
    async def pay(self, requests: list[PaymentRequest]) -> list[PayOutcome]:
        """Run payments; a request whose idempotency key was seen replays the first
        outcome (or is refused if its fingerprint differs). Concurrent duplicates wait
        for the one in flight, so a key never makes two payments."""
        await self.ready()
        loop = asyncio.get_running_loop()
        answers: list[PayOutcome | str | None] = []  # an outcome, a payment id to replay, or fresh
        fresh: list[PaymentRequest] = []
        for r in requests:
            if r.idempotency_key is not None:
                known = await self._find_key(r.idempotency_key)
                if known is None and r.idempotency_key in self.keys:  # claimed while we looked on disk
                    known = self.keys[r.idempotency_key][:2]
                if known is not None:
                    answers.append(PayOutcome(None, conflict=True) if known[0] != r.fingerprint else known[1])
                    continue
            if r.payment_id in self.recent or r.payment_id in self._inflight:
                answers.append(r.payment_id)  # a redelivered call: answer with the first outcome
                continue
            self._inflight[r.payment_id] = loop.create_future()
            self._pending[r.payment_id] = r
            if r.idempotency_key is not None:
                self._remember_key(r.idempotency_key, r.fingerprint, r.payment_id, r.created_at_ms)
            fresh.append(r)
            answers.append(None)
        if fresh:
            try:
                decided = iter(await self._run(fresh))
            except BaseException:
                for r in fresh:  # nothing was decided: the key may be used again
                    if r.idempotency_key is not None:
                        self.keys.pop(r.idempotency_key, None)
                raise
            finally:
                for r in fresh:
                    self._pending.pop(r.payment_id, None)
                    fut = self._inflight.pop(r.payment_id)
                    if r.payment_id in self.recent:
                        fut.set_result(self.recent[r.payment_id])
                    else:
                        fut.cancel()
            answers = [PayOutcome(next(decided)) if a is None else a for a in answers]
        return [a if isinstance(a, PayOutcome) else await self._replay(a) for a in answers]  # type: ignore[arg-type]

    async def _replay(self, payment_id: str) -> PayOutcome:
        inflight = self._inflight.get(payment_id)
        payment = await asyncio.shield(inflight) if inflight is not None else await self.get_payment(payment_id)
        assert payment is not None, f"an idempotency key points at unknown payment {payment_id}"
        return PayOutcome(payment, replayed=True)

    async def _run(self, requests: list[PaymentRequest]) -> list[PaymentRecord]:
        if not self.journal.writable:
            raise JournalUnavailable("coordinator journal is not writable")
        epoch = self.epoch
        debits: dict[int, list[SideRequest]] = defaultdict(list)
        credits: dict[int, list[SideRequest]] = defaultdict(list)
        for r in requests:
            debits[self._shard(r.balance_from)].append(
                SideRequest(r.payment_id, r.balance_from, r.amount_minor, r.currency)
            )
            credits[self._shard(r.balance_to)].append(
                SideRequest(r.payment_id, r.balance_to, r.amount_minor, r.currency)
            )
        calls = [(k, "reserve", items) for k, items in debits.items()] + [
            (k, "prepare", items) for k, items in credits.items()
        ]
        replies = await asyncio.gather(
            *(self._peer(k).call(method, self.index, epoch, items) for k, method, items in calls),
            return_exceptions=True,
        )
        codes: dict[tuple[str, str], Check] = {}
        for (_, _, items), reply in zip(calls, replies, strict=True):
            for n, item in enumerate(items):
                # A shard that raised (journal unwritable) left no hold behind: refuse the leg.
                code = Check.UNAVAILABLE if isinstance(reply, BaseException) else Check(reply[n])
                codes[(item.payment_id, item.balance_id)] = code
        settled_at_ms = _now_ms()
        decided = []
        for r in requests:
            status, reason = decide(codes[(r.payment_id, r.balance_from)], codes[(r.payment_id, r.balance_to)])
            payment = PaymentRecord(
                id=r.payment_id,
                balance_from=r.balance_from,
                balance_to=r.balance_to,
                amount_minor=r.amount_minor,
                currency=r.currency,
                status=status,
                reason=reason,
                created_at_ms=r.created_at_ms,
                settled_at_ms=settled_at_ms,
                description=r.description,
                metadata=r.metadata,
                idempotency_key=r.idempotency_key,
                fingerprint=r.fingerprint,
            )
            self._commit(Decided(payment))
            decided.append(payment)
        await self.journal.durable()
        await self._phase2(decided)
        return decided

    async def _phase2(self, payments: list[PaymentRecord]) -> None:
        """Post (success) or void (anything else) both legs, then mark complete."""
        posts: dict[int, list[HoldRef]] = defaultdict(list)
        voids: dict[int, list[HoldRef]] = defaultdict(list)
        for p in payments:
            target = posts if p.status == PaymentStatus.SUCCESS else voids
            for balance_id in (p.balance_from, p.balance_to):
                if balance_id:
                    target[self._shard(balance_id)].append(HoldRef(p.id, balance_id))
        await asyncio.gather(
            *(call_until_done(self._peer(k), "post", refs) for k, refs in posts.items()),
            *(call_until_done(self._peer(k), "void", refs) for k, refs in voids.items()),
        )
        for p in payments:
            if p.id in self.unfinished:
                self._commit(Completed(p.id))
        # Completed only saves recovery work; no reply waits for it.

    async def get_payment(self, payment_id: str) -> PaymentRecord | None:
        await self.ready()
        known = self.recent.get(payment_id)
        if known is not None:
            return known
        pending = self._pending.get(payment_id)
        if pending is not None:
            return _pending_record(pending)
        found = await self.journal.query(payment_id, "de", limit=1)
        if not found:
            return None
        rec = found[0].record
        assert isinstance(rec, Decided)
        return rec.payment

    async def list_payments(
        self, balance_id: str | None, status: str | None, limit: int, before_id: str | None
    ) -> list[PaymentRecord]:
        """Decided payments, newest first (by id, i.e. creation time)."""
        await self.journal.durable()
        status_tag = f"s:{status}" if status else None
        if balance_id:
            tag, also = f"b:{balance_id}", status_tag
        else:
            tag, also = status_tag or "pay", None
        found = await self.journal.tagged(tag, limit=limit, before_id=before_id, also_tag=also)
        return [s.record.payment for s in found]  # type: ignore[union-attr]

    async def stats(self) -> dict[str, object]:
        await self.ready()
        return {"coordinator": self.index, "epoch": self.epoch, "unfinished": len(self.unfinished)}

    async def close(self) -> None:
        await self.journal.close()
