"""BalanceShard: the single writer of the balances in its partitions.

Each partition has its own book and journal (sequence, hash chain, snapshots), so
partitions can move between shards when the shard count changes; the journals of a shard's
partitions share one SQLite file, so a batch costs one commit. Every method handles a
batch, follows decide -> append -> apply for each item with no `await` in between (so
check-then-apply is atomic on the actor's event loop), and replies only after the flush
that covers what it read or wrote.
Every method is idempotent: Ray may deliver a call again after a restart.

A payment's trip in a shard's process is `phase_one` (its reservations decided by each
partition's `BalanceBook`, journaled, answered after the flush), then `phase_two` (posted or
voided once the coordinator has decided), usually carried by a later `phase_one`; the trip
before and between is in actors/coordinator/payments.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Coroutine, Iterable, Iterator
from pathlib import Path

import msgspec

from actors import clock
from actors.channel import ChannelServer, node_address
from actors.logs import event
from actors.memory import freeze_long_lived_state
from actors.partition import Partition
from actors.peers import SHARD_STREAMED
from actors.settings import Settings
from actors.telemetry import Telemetry, placement
from actors.topology import partition_of, partitions_of_shard, shard_name
from journal import Journal, JournalUnavailable, SqliteFile, SqliteJournal, adopt_partitions
from ledger.book import CREDIT, DEBIT, BalanceView, OpenReservation
from ledger.ids import is_hold_id
from ledger.messages import BalanceSpec, HoldRef, SideRequest, unpack
from ledger.records import Posted
from ledger.results import Check

log = logging.getLogger("rayledger.shard")

# A leg in flight on a balance: resolved when it settles here, and until when to wait for it.
Closing = tuple[asyncio.Future[None], float]


class Entry(msgspec.Struct, frozen=True, array_like=True):
    seq: int
    payment_id: str
    delta_minor: int
    balance_after_minor: int
    at_ms: int


def shard_journal_path(settings: Settings, shard: int) -> Path:
    return settings.data_path / "shards" / f"s-{shard:03d}.sqlite"


class BalanceShard:
    def __init__(self, settings: Settings, index: int, journals: dict[int, Journal] | None = None) -> None:
        started = time.perf_counter()
        self.settings = settings
        self.index = index
        owned = partitions_of_shard(index, settings.partitions, settings.shards)
        if journals is None:
            # One file for all of this shard's partitions: a batch is one commit and one
            # fsync here, however many partitions it touches. Partitions another layout left
            # in other shards' files move here first (journal.handoff).
            path = shard_journal_path(settings, index)
            adopted = adopt_partitions(path, sorted(path.parent.glob("s-*.sqlite")), owned)
            if adopted:
                event(log, "partitions_adopted", actor=shard_name(index), partitions=adopted)
            file = SqliteFile(
                path, busy_timeout_ms=settings.journal_busy_timeout_ms, commit_on_loop=settings.journal_commit_on_loop
            )
            journals = {
                p: SqliteJournal(
                    file,
                    part=p,
                    batch_rows_max=settings.journal_batch_rows_max,
                    history_elsewhere=settings.history_index_process,
                )
                for p in owned
            }
        self.partitions = {p: Partition(p, journals[p]) for p in owned}
        self._snapshots: dict[int, asyncio.Task[None]] = {}  # partition -> snapshot being written
        # (payment or hold id, balance) -> (what reads wait on, when reads stop waiting for it)
        self._closing: dict[tuple[str, str], Closing] = {}
        self._channel: ChannelServer | None = None
        self.telemetry = Telemetry(settings.namespace, shard_name(index))
        for p, part in self.partitions.items():
            self.telemetry.watch(part.journal, f"p-{p}")
        self._count_balances()
        freeze_long_lived_state()
        event(
            log,
            "recovered",
            actor=shard_name(index),
            **self._counts(),
            records_replayed=sum(p.replayed for p in self.partitions.values()),
            seconds=round(time.perf_counter() - started, 3),
            **placement(),
        )

    def __repr__(self) -> str:  # Ray prefixes forwarded log lines with it (with the class name during __init__)
        return shard_name(self.index)

    def _balance_count(self) -> int:
        return sum(len(p.book.balances) for p in self.partitions.values())

    def _count_balances(self) -> None:
        self.telemetry.balances.set(self._balance_count())

    def _counts(self) -> dict[str, object]:
        """What this shard holds (its recovery log event and `stats`)."""
        return {
            "partitions": sorted(self.partitions),
            "balances": self._balance_count(),
            "open_reservations": sum(len(p.book.reservations) for p in self.partitions.values()),
        }

    # -- helpers ------------------------------------------------------------------------
    def _part(self, balance_id: str) -> Partition:
        p = partition_of(balance_id, self.settings.partitions)
        part = self.partitions.get(p)
        assert part is not None, f"balance {balance_id} (partition {p}) is not owned by shard {self.index}"
        return part

    def _require_writable(self, parts: Iterable[Partition]) -> None:
        for part in parts:
            if not part.journal.writable:
                raise JournalUnavailable(f"partition {part.index} journal is not writable")

    async def _flush(self, parts: Iterable[Partition]) -> None:
        """Wait until every touched partition is durable, then maybe snapshot."""
        parts = list({id(p): p for p in parts}.values())
        for part in parts:
            part.seal()
        await asyncio.gather(*(p.journal.durable() for p in parts))
        for part in parts:
            if (
                part.journal.last_seq - part.snapshot_seq >= self.settings.snapshot_every_records
                and part.index not in self._snapshots
            ):
                # State and journal position are captured together, with no await between.
                part.seal()
                write = part.journal.save_snapshot(msgspec.msgpack.encode(part.book.snapshot()))
                self._snapshots[part.index] = asyncio.get_running_loop().create_task(self._snapshot(part, write))

    async def _snapshot(self, part: Partition, write: Coroutine[None, None, int]) -> None:
        try:
            part.snapshot_seq = await write
        finally:
            del self._snapshots[part.index]

    # -- balances -----------------------------------------------------------------------
    async def open_balances(self, specs: list[BalanceSpec]) -> None:
        touched = [self._part(s.balance_id) for s in specs]
        self._require_writable(touched)
        for spec, part in zip(specs, touched, strict=True):
            record = part.book.decide_open(spec.balance_id, spec.currency, spec.overdraft_limit_minor, spec.unlimited)
            if record is not None:
                part.commit(record)
        self._count_balances()
        await self._flush(touched)

    async def change_balance(
        self, balance_id: str, active: bool | None, overdraft_limit_minor: int | None
    ) -> tuple[int, bool, int, bool]:
        """Change a balance's status or overdraft limit (None: as it is); idempotent. The
        code, the status and limit the balance now has, and whether they changed."""
        part = self._part(balance_id)
        self._require_writable([part])
        code, record = part.book.decide_change(balance_id, active, overdraft_limit_minor)
        if record is not None:
            part.commit(record)
        await self._flush([part])
        balance = part.book.balances.get(balance_id)
        if balance is None:
            return int(code), False, 0, False
        return int(code), balance.active, balance.overdraft_limit, record is not None

    async def get_balances(self, balance_ids: list[str]) -> list[BalanceView | None]:
        parts = [self._part(b) for b in balance_ids]
        await self._after_payments_on(zip(parts, balance_ids, strict=True))
        views = [part.book.view(b) for b, part in zip(balance_ids, parts, strict=True)]
        await self._flush(parts)  # a read never shows what is not yet on disk
        return views

    async def set_account_active(self, balance_ids: list[str], active: bool) -> None:
        touched = [self._part(b) for b in balance_ids]
        self._require_writable(touched)
        for balance_id, part in zip(balance_ids, touched, strict=True):
            record = part.book.decide_account_activity(balance_id, active)
            if record is not None:
                part.commit(record)
        await self._flush(touched)

    async def entries(
        self,
        balance_id: str,
        limit: int,
        before_seq: int | None = None,
        after_seq: int | None = None,
        ascending: bool = False,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> list[Entry]:
        """Statement lines strictly between the journal positions `after_seq` and
        `before_seq`, newest first (oldest first if `ascending`), posted in
        [`since_ms`, `until_ms`). A partition posts in time order, so a page stops at the
        first line outside the time range."""
        part = self._part(balance_id)
        await self._after_payments_on([(part, balance_id)])
        await part.journal.durable()
        out: list[Entry] = []
        while len(out) < limit:
            stored = await part.journal.tagged(
                f"po:{balance_id}", limit=limit, by_seq=True, before_seq=before_seq, after_seq=after_seq,
                ascending=ascending,
            )  # fmt: skip
            for s in stored:
                rec = s.record
                assert isinstance(rec, Posted)
                too_new = until_ms is not None and rec.at_ms >= until_ms
                too_old = since_ms is not None and rec.at_ms < since_ms
                if too_new or too_old:
                    if too_new != ascending:
                        continue  # not in the range yet, in this direction
                    return out  # past it
                out.append(Entry(s.seq, rec.payment_id, rec.delta_minor, rec.balance_after_minor, rec.at_ms))
                if len(out) == limit:
                    return out
            if len(stored) < limit:
                return out
            before_seq, after_seq = (before_seq, stored[-1].seq) if ascending else (stored[-1].seq, after_seq)
        return out

    async def entry_seq(self, balance_id: str, seq: int | None, payment_id: str | None = None) -> int | None:
        """The journal position of a statement line of `balance_id`, given as its position
        or as its payment's id (list cursors of both kinds); None if it has no such line."""
        part = self._part(balance_id)
        await part.journal.durable()
        tag = f"po:{balance_id}"
        if payment_id is not None:
            found = await part.journal.tagged(tag, limit=1, by_seq=True, only_id=payment_id)
        else:
            assert seq is not None
            found = await part.journal.tagged(tag, limit=1, by_seq=True, before_seq=seq + 1)
        return found[0].seq if found and (seq is None or found[0].seq == seq) else None

    # -- two-phase payment legs -----------------------------------------------------------
    async def reserve(self, coordinator: int, epoch: int, items: list[SideRequest]) -> list[int]:
        return (await self.phase_one(coordinator, epoch, items, []))[0]

    async def prepare(self, coordinator: int, epoch: int, items: list[SideRequest]) -> list[int]:
        return (await self.phase_one(coordinator, epoch, [], items))[1]

    async def phase_one(
        self,
        coordinator: int,
        epoch: int,
        debits: list[SideRequest] | bytes,
        credits: list[SideRequest] | bytes,
        posts: list[HoldRef] | bytes | None = None,
        voids: list[HoldRef] | bytes | None = None,
    ) -> tuple[list[int], list[int], list[int]]:
        """Phase one for both sides in one call (the coordinator's usual path): reserve the
        paying legs and prepare the receiving legs owned here. The call also carries phase
        two of earlier decisions (`posts`, `voids`), applied first so that what they
        release counts for the new legs. One flush covers all of it. Returns the debit
        codes, the credit codes and the indexes of carried legs that could not be written."""
        debits, credits = unpack(debits, list[SideRequest]), unpack(credits, list[SideRequest])
        with self.telemetry.serving():
            written: list[Partition] = []
            owed = unpack(posts or [], list[HoldRef]), unpack(voids or [], list[HoldRef])
            unsettled = self._close_legs(*owed, written)
            debit_codes = self._decide_reservations(coordinator, epoch, debits, written, debit=True)
            # Before this call's own credits open: they settle only after it answers.
            short = self._short_of_incoming(debits, debit_codes)
            credit_codes = self._decide_reservations(coordinator, epoch, credits, written, debit=False)
            await self._flush(written)
            if short:
                await self._decide_again(coordinator, epoch, debits, debit_codes, short)
            return debit_codes, credit_codes, unsettled

    def _short_of_incoming(self, debits: list[SideRequest], codes: list[int]) -> dict[int, list[Closing]]:
        """The refused debits that the credits settling on their balance would cover, with
        what to wait for: a payment told `success` has its credit posted a moment after its
        answer (phase two), and a payment from the balance it paid into, made right after
        that answer, may overtake the post. It must see the money, as a read does."""
        short: dict[int, list[Closing]] = {}
        for n, (it, code) in enumerate(zip(debits, codes, strict=True)):
            if code != Check.NOT_ENOUGH_MONEY:
                continue
            part = self._part(it.balance_id)
            balance = part.book.balances[it.balance_id]
            if balance.available + balance.incoming >= it.amount_minor:
                waits = self._settling_on(part, it.balance_id, credits_only=True)
                if waits:
                    short[n] = waits
        return short

    async def _decide_again(
        self, coordinator: int, epoch: int, debits: list[SideRequest], codes: list[int], short: dict[int, list[Closing]]
    ) -> None:
        """Decide the `short` debits again once the credits they wait for have settled."""
        await self._wait_closing([w for waits in short.values() for w in waits])
        written: list[Partition] = []
        again = self._decide_reservations(coordinator, epoch, [debits[n] for n in short], written, debit=True)
        for n, code in zip(short, again, strict=True):
            codes[n] = code
        await self._flush(written)

    def _decide_reservations(
        self, coordinator: int, epoch: int, items: list[SideRequest], written: list[Partition], *, debit: bool
    ) -> list[int]:
        codes = []
        side = DEBIT if debit else CREDIT
        with _journaled_if_it_fails(written):
            for it in items:
                part = self._part(it.balance_id)
                if not part.journal.writable:  # refuse this leg only; the rest of the batch goes on
                    codes.append(int(Check.UNAVAILABLE))
                    continue
                codes.append(part.hold(side, it, coordinator, epoch))  # journaled by the flush
                written.append(part)
        return codes

    async def phase_two(self, posts: list[HoldRef] | bytes, voids: list[HoldRef] | bytes) -> None:
        """Phase two on its own: post and void decided legs (idempotent). Raises
        JournalUnavailable, for the coordinator to send them again, if any could not be written."""
        written: list[Partition] = []
        with self.telemetry.serving():
            unsettled = self._close_legs(unpack(posts, list[HoldRef]), unpack(voids, list[HoldRef]), written)
            await self._flush(written)
        if unsettled:
            raise JournalUnavailable(f"{len(unsettled)} legs are on partitions whose journal is not writable")

    async def post(self, refs: list[HoldRef] | bytes) -> None:
        await self.phase_two(refs, [])

    async def void(self, refs: list[HoldRef] | bytes) -> None:
        await self.phase_two([], refs)

    def _close_legs(self, posts: list[HoldRef], voids: list[HoldRef], written: list[Partition]) -> list[int]:
        """Apply decided legs; the indexes (posts first, then voids) of those whose
        partition cannot be written now. Wakes the reads waiting for them."""
        at_ms = clock.now_ms()
        unsettled = []
        with _journaled_if_it_fails(written):
            for n, ref in enumerate(itertools.chain(posts, voids)):
                part = self._part(ref.balance_id)
                if not part.journal.writable:
                    unsettled.append(n)
                    continue
                key = ref.hold_id or ref.payment_id
                if n >= len(posts):
                    changed = part.void(key, ref.balance_id)  # journaled by the flush, with the call's other legs
                elif ref.amount_minor is None and ref.hold_id is None and ref.capture_seq is None:
                    changed = part.post(ref.payment_id, ref.balance_id)
                else:  # a capture: in part, or of a hold under its own id
                    record = part.book.decide_post(
                        ref.payment_id, ref.balance_id, at_ms, ref.amount_minor, ref.hold_id, ref.capture_seq
                    )
                    if record is not None:
                        part.commit(record)
                    changed = record is not None
                if changed:
                    waiting = self._closing.pop((key, ref.balance_id), None)
                    if waiting is not None and not waiting[0].done():
                        waiting[0].set_result(None)
                written.append(part)
        return unsettled

    async def _after_payments_on(self, balances: Iterable[tuple[Partition, str]]) -> None:
        """Wait until the payments in flight on these balances right now have settled here.
        A payment is answered once its decision is durable (the commit point), and its
        posts may reach this shard a moment later, so a read waits for them rather than
        overtake them: a client that was told `success` then sees the money moved. Each
        balance comes with its partition, which the caller looked up already."""
        await self._wait_closing([w for part, balance_id in balances for w in self._settling_on(part, balance_id)])

    def _settling_on(self, part: Partition, balance_id: str, *, credits_only: bool = False) -> list[Closing]:
        """What to wait for until the payments in flight on a balance settle here.
        Authorization holds stay open for long and are not waited for."""
        loop = asyncio.get_running_loop()
        waits = []
        for hold_id in part.book.reservations_on(balance_id):
            if is_hold_id(hold_id) or (credits_only and part.book.reservations[(hold_id, balance_id)].side != CREDIT):
                continue
            key = (hold_id, balance_id)
            waiting = self._closing.get(key)
            if waiting is None:
                deadline = loop.time() + self.settings.read_settle_wait_ms / 1000
                waiting = self._closing[key] = (loop.create_future(), deadline)
            waits.append(waiting)
        return waits

    @staticmethod
    async def _wait_closing(waits: list[Closing]) -> None:
        """Bounded by `read_settle_wait_ms` from when anyone first waited for a leg: while a
        coordinator recovers, its legs stay open, and reads then show them as reserved
        (later waits for the same stuck leg do not wait again)."""
        if not waits:
            return
        timeout = max(deadline for _, deadline in waits) - asyncio.get_running_loop().time()
        if timeout > 0:
            await asyncio.wait([future for future, _ in waits], timeout=timeout)

    async def fence(self, coordinator: int, epoch: int) -> list[OpenReservation]:
        """Refuse older incarnations of `coordinator`; return its reservations still open here."""
        parts = list(self.partitions.values())
        self._require_writable(parts)
        for part in parts:
            record = part.book.decide_fence(coordinator, epoch)
            if record is not None:
                part.commit(record)
        await self._flush(parts)
        return [h for part in parts for h in part.book.open_reservations(coordinator)]

    # -- operations -----------------------------------------------------------------------
    async def channel_address(self) -> tuple[str, int, bytes]:
        """Where coordinators stream `phase_one` and `phase_two` to this incarnation (actors.channel)."""
        if self._channel is None:
            methods = {name: getattr(self, name) for name in SHARD_STREAMED}  # what coordinators stream
            self._channel = ChannelServer(methods, node_address())
        return await self._channel.address()

    async def stats(self) -> dict[str, object]:
        """Health and counters; answers at once even while a journal cannot be written."""
        return {
            "shard": self.index,
            **self._counts(),
            "writable": all(p.journal.writable for p in self.partitions.values()),
            "streamed_calls": 0 if self._channel is None else self._channel.calls,
            **placement(),
        }

    async def totals(self) -> dict[str, int]:
        """Sum of posted amounts per currency over this shard (for audits)."""
        parts = list(self.partitions.values())
        await self._after_payments_on((p, b) for p in parts for b in list(p.book.reservations_by_balance))
        await self._flush(parts)
        totals: dict[str, int] = {}
        for part in parts:
            for currency, amount in part.book.totals_by_currency().items():
                totals[currency] = totals.get(currency, 0) + amount
        return totals

    async def all_balances(self) -> list[BalanceView]:
        parts = list(self.partitions.values())
        await self._after_payments_on((p, b) for p in parts for b in list(p.book.reservations_by_balance))
        await self._flush(parts)
        return [v for p in parts for b in p.book.balances if (v := p.book.view(b)) is not None]

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        await asyncio.gather(*self._snapshots.values(), return_exceptions=True)  # journals close regardless
        await asyncio.gather(*(p.journal.close() for p in self.partitions.values()))


@contextlib.contextmanager
def _journaled_if_it_fails(written: list[Partition]) -> Iterator[None]:
    """Legs applied by a call that then fails (a bug) are journaled all the same: the book
    and the journal never disagree past the call (else the next seal on that partition would
    journal them, whenever it came)."""
    try:
        yield
    except BaseException:
        for part in written:
            part.seal()
        raise
