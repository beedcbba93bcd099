"""Clients of a simulated cluster: what a ledger's users send, from one seeded source.

Payments keyed and not, deposits and withdrawals, transfers of 1 to 16 legs, exchanges at a
quote, authorization holds captured in parts, voided or left to expire, refunds, the same
key sent twice at once and again after a lost answer, most of it on two hot balances; and
reads between them. Each answer is checked as it arrives: a key answers its first decision
every time (exactly once), a decision read back is the one answered, and a balance read in a
calm spell reflects the payments answered before it (read-your-writes).

A request runs in the ingress's process (`SimCluster.ingress`); the cluster's death loses its
answer. A keyed request is then sent again with its key, as a client does; a keyless one's
outcome is left unknown (the end of the run checks the journals, not the client's hopes).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from actors import clock
from actors.client import LedgerClient
from actors.registry import Registry
from actors.topology import coordinator_of, partition_of
from journal import JournalUnavailable
from journal.memory import SimulatedCrash
from ledger.messages import HoldRequest, PaymentRequest, TransferRequest
from ledger.outcomes import Outcome, undecided
from ledger.records import FxQuote, HoldRecord, PaymentRecord
from ledger.results import PaymentStatus
from tests.sim.cluster import SimCluster
from tests.sim.invariants import Invariants

T = TypeVar("T")
ATTEMPTS_MAX = 6


class Lost:
    """The answer never came: the connection died with the cluster, or the ledger refused."""

    def __init__(self, why: str) -> None:
        self.why = why


@dataclass
class Balances:
    issuer: dict[str, str] = field(default_factory=dict)  # currency -> issuer balance
    users: dict[str, list[str]] = field(default_factory=dict)  # currency -> user balances
    infos: dict[str, Any] = field(default_factory=dict)  # balance -> BalanceInfo (for quotes)


class Workload:
    def __init__(self, cluster: SimCluster, invariants: Invariants, rng: random.Random) -> None:
        self.cluster = cluster
        self.invariants = invariants
        self.rng = rng
        self.balances = Balances()
        self.keys: dict[str, tuple[str, str]] = {}  # key -> (id, status) first decided
        self.refundable: dict[str, int] = {}  # succeeded payment -> what is left to refund
        self.holds: list[str] = []  # holds placed and maybe still held
        self.unknown: list[str] = []  # keyless payments whose answer was lost
        self.counts: dict[str, int] = {}
        self.calm = 0  # bumped by every fault: a read is checked only if no fault came since its payment
        self.stop = False
        self._n = 0

    # -- plumbing ---------------------------------------------------------------------------
    async def ask(self, make: Callable[[LedgerClient], Awaitable[T]]) -> T | Lost:
        task = self.cluster.ingress(self.cluster.serve(make))
        await asyncio.wait([task])
        if task.cancelled() or isinstance(task.exception(), SimulatedCrash):
            return Lost("connection lost")
        exc = task.exception()
        if isinstance(exc, JournalUnavailable):
            return Lost("journal unavailable")
        if exc is not None:
            raise exc  # a bug: an assertion in the ledger, or an error no client should see
        return task.result()  # type: ignore[no-any-return]

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def new_key(self) -> str:
        self._n += 1
        return f"admin:k{self._n}"

    def owned_id(self, prefix: str, owner: str) -> str:
        """A fresh id owned by the coordinator that owns `owner` (a key or a hold id), as the
        gateway draws it."""
        n = self.cluster.settings.coordinators
        while True:
            some_id = clock.new_id(prefix)
            if coordinator_of(some_id, n) == coordinator_of(owner, n):
                return some_id

    def pick(self, currency: str) -> tuple[str, str]:
        users = self.balances.users[currency]
        hot = users[:2]
        a = self.rng.choice(hot) if self.rng.random() < 0.5 else self.rng.choice(users)
        b = self.rng.choice([u for u in users if u != a])
        return a, b

    def decided(self, key: str | None, record: PaymentRecord) -> None:
        """A decision answered: it must be the key's first, and it is now acknowledged."""
        if key is not None:
            first = self.keys.setdefault(key, (record.id, record.status))
            assert first == (record.id, record.status), f"key {key} answered {first}, now {record.id} {record.status}"
        self.invariants.acknowledged[record.id] = record.status
        if record.status == PaymentStatus.SUCCESS:
            self.count("succeeded")

    # -- set-up -----------------------------------------------------------------------------
    async def open(self, users_per_currency: int) -> None:
        async def build(client: LedgerClient) -> None:
            registry = client.registry
            for currency in ("USD", "EUR"):
                ids = []
                for n in range(users_per_currency):
                    account = await registry.invoke(Registry.create_account, f"{currency}{n}@example.com", None)
                    code, info = await registry.invoke(Registry.create_balance, account.id, currency, 0)  # type: ignore[union-attr]
                    assert code == "ok", code
                    ids.append(info.id)  # type: ignore[union-attr]
                    self.balances.infos[info.id] = info  # type: ignore[union-attr]
                self.balances.users[currency] = ids
                issuer = await registry.invoke(Registry.currency, currency, ensure_issuer=True)
                self.balances.issuer[currency] = issuer.issuer_balance_id  # type: ignore[union-attr]
            rate = await registry.invoke(Registry.set_rate, "USD", "EUR", "0.9")
            assert not isinstance(rate, str), rate
            rate = await registry.invoke(Registry.set_rate, "EUR", "USD", "1.1")
            assert not isinstance(rate, str), rate

        assert not isinstance(await self.ask(build), Lost)
        for currency, users in self.balances.users.items():
            for b in users:
                await self.pay(self.balances.issuer[currency], b, 5_000_00, currency, keyed=True)

    # -- operations -------------------------------------------------------------------------
    async def pay(
        self, a: str, b: str, amount: int, currency: str, *, keyed: bool, fx: FxQuote | None = None
    ) -> PaymentRecord | None:
        """The decision answered (None: none came)."""
        key = self.new_key() if keyed else None
        twice = keyed and self.rng.random() < 0.15  # the same key sent twice at once
        for _ in range(ATTEMPTS_MAX):
            now = clock.now_ms()
            requests = []
            for _ in range(2 if twice else 1):
                payment_id = self.owned_id("pay", key) if key else clock.new_id("pay")
                requests.append(
                    PaymentRequest(
                        payment_id, a, b, amount, currency, now, None, None, key, key and key.encode(), None, fx
                    )
                )
            answers = await asyncio.gather(*(self.ask(lambda c, r=r: c.pay_outcomes([r])) for r in requests))
            final = None
            for answer in answers:
                if isinstance(answer, Lost):
                    continue
                [outcome] = answer
                assert not outcome.conflict, f"key {key}: a conflict on the same request"
                if outcome.refused == "unavailable":  # nothing moved: 503, the client retries
                    continue
                p = outcome.payment
                assert p is not None
                if undecided(p):
                    continue
                self.decided(key, p)
                final = p
            if final is not None or key is None:
                if final is None:
                    self.unknown += [r.payment_id for r in requests]
                return final
            await asyncio.sleep(self.rng.uniform(0.001, 0.05))
        self.count("gave_up")
        return None

    async def payment(self) -> None:
        currency = self.rng.choice(("USD", "EUR"))
        a, b = self.pick(currency)
        p = await self.pay(a, b, self.rng.randint(1, 300_00), currency, keyed=self.rng.random() < 0.7)
        if p is not None and p.status == PaymentStatus.SUCCESS:
            self.refundable[p.id] = p.amount_minor
        self.count("payments")

    async def deposit_or_withdrawal(self) -> None:
        currency = self.rng.choice(("USD", "EUR"))
        user, issuer = self.rng.choice(self.balances.users[currency]), self.balances.issuer[currency]
        a, b = (issuer, user) if self.rng.random() < 0.5 else (user, issuer)
        await self.pay(a, b, self.rng.randint(1, 200_00), currency, keyed=True)
        self.count("deposits_withdrawals")

    async def transfer(self) -> None:
        key = self.new_key()
        transfer_id = self.owned_id("tr", key)
        legs = []
        for _ in range(self.rng.randint(1, 16)):
            currency = self.rng.choice(("USD", "EUR"))
            a, b = self.pick(currency)
            leg_id = self.owned_id("pay", key)
            legs.append(PaymentRequest(leg_id, a, b, self.rng.randint(1, 100_00), currency, clock.now_ms()))
        t = TransferRequest(transfer_id, legs, clock.now_ms(), None, None, key, key.encode())
        for _ in range(ATTEMPTS_MAX):
            answer = await self.ask(lambda c: c.transfer_outcomes([t]))
            if not isinstance(answer, Lost):
                [outcome] = answer
                record = outcome.transfer
                assert not outcome.conflict
                if record is not None and not undecided(record):
                    first = self.keys.setdefault(key, (record.id, record.status))
                    assert first == (record.id, record.status), f"transfer key {key}: {first}, now {record.status}"
                    for leg in record.legs:
                        self.invariants.acknowledged[leg.payment_id] = record.status
                    self.count("transfers")
                    return
            await asyncio.sleep(self.rng.uniform(0.001, 0.05))
        self.count("gave_up")

    async def exchange(self) -> None:
        base, quote = self.rng.choice((("USD", "EUR"), ("EUR", "USD")))
        a, b = self.rng.choice(self.balances.users[base]), self.rng.choice(self.balances.users[quote])
        amount = self.rng.randint(1, 100_00)
        info_a, info_b = self.balances.infos[a], self.balances.infos[b]
        expires = clock.now_ms() + 2_000
        made = await self.ask(
            lambda c: c.registry.invoke(Registry.create_quote, clock.new_id("fxq"), info_a, info_b, amount, expires)
        )
        if isinstance(made, Lost) or isinstance(made, str):
            return
        liquidity = made.liquidity_to
        await self.pay(self.balances.issuer[quote], liquidity, made.amount_to_minor, quote, keyed=True)  # fund it
        await self.pay(a, b, amount, base, keyed=True, fx=made)
        self.count("exchanges")

    async def hold(self) -> None:
        currency = self.rng.choice(("USD", "EUR"))
        a, b = self.pick(currency)
        key = self.new_key()
        hold_id = self.owned_id("hold", key)
        now = clock.now_ms()
        expires = now + self.rng.choice((200, 2_000, 60_000))
        r = HoldRequest(hold_id, a, b, self.rng.randint(1, 200_00), currency, now, expires, key, key.encode())
        answer = await self.until_answered(lambda c: c.place_hold(r))
        if answer is not None:
            assert not answer.conflict and answer.hold is not None, answer
            first = self.keys.setdefault(key, (answer.hold.id, "placed"))
            assert first[0] == answer.hold.id, f"hold key {key}: {first}, now {answer.hold.id}"
            if answer.hold.status == "held":
                self.holds.append(answer.hold.id)
            self.count("holds")

    async def close_hold(self) -> None:
        if not self.holds:
            return
        hold_id = self.rng.choice(self.holds)
        found = await self.ask(lambda c: c.get_hold(hold_id))
        if isinstance(found, Lost) or found is None or found.status != "held":
            if not isinstance(found, Lost) and found is not None and hold_id in self.holds:
                self.holds.remove(hold_id)
            return
        hold: HoldRecord = found
        key, final = self.new_key(), self.rng.random() > 0.5
        amount = self.rng.randint(1, max(1, hold.amount_minor // 2))
        if self.rng.random() < 0.3:
            answer = await self.until_answered(lambda c: c.void_hold(hold_id, key, key.encode()))
        else:  # the gateway draws a payment id for each attempt; the key makes them one
            answer = await self.until_answered(
                lambda c: c.capture_hold(
                    hold_id, amount, self.owned_id("pay", hold_id), clock.now_ms(), key, key.encode(), final
                )
            )
        if answer is not None:
            if answer.payment is not None and not undecided(answer.payment):
                self.decided(key, answer.payment)
            self.count("hold_closes")

    async def refund(self) -> None:
        if not self.refundable:
            return
        original_id = self.rng.choice(sorted(self.refundable))
        left = self.refundable[original_id]
        original = await self.ask(lambda c: c.get_payment(original_id))
        if isinstance(original, Lost):
            return
        assert original is not None and original.status == PaymentStatus.SUCCESS, f"{original_id} read back {original}"
        key, amount = self.new_key(), self.rng.randint(1, left)
        r = PaymentRequest(
            self.owned_id("pay", original_id),
            original.balance_to,
            original.balance_from,
            amount,
            original.currency,
            clock.now_ms(),
            "refund",
            None,
            key,
            key.encode(),
            original_id,
        )
        answer = await self.until_answered(lambda c: c.refund(r))
        if answer is not None:
            if answer.payment is not None and not undecided(answer.payment):
                self.decided(key, answer.payment)
                if answer.payment.status == PaymentStatus.SUCCESS:  # what is left of it to refund
                    left = self.refundable.pop(original_id, 0) - amount  # another client's refund too
                    if left > 0:
                        self.refundable[original_id] = left
            self.count("refunds")

    async def until_answered(self, send: Callable[[LedgerClient], Awaitable[Outcome]]) -> Outcome | None:
        """Sent again with its key until an answer comes that is not 503 (None: given up)."""
        for _ in range(ATTEMPTS_MAX):
            answer = await self.ask(send)
            if not isinstance(answer, Lost) and answer.refused != "unavailable":
                return answer
            await asyncio.sleep(self.rng.uniform(0.001, 0.05))
        self.count("gave_up")
        return None

    async def read(self) -> None:
        """A decision read back is the one answered; in a calm spell a balance read shows it moved."""
        acked = self.invariants.acknowledged
        if not acked:
            return
        payment_id = self.rng.choice(list(acked)[-50:])
        calm = self.calm
        found = await self.ask(lambda c: c.get_payment(payment_id))
        if isinstance(found, Lost):
            return
        assert found is not None and found.status == acked[payment_id], (
            f"{payment_id} answered {acked[payment_id]}, read {found}"
        )
        if found.status != PaymentStatus.SUCCESS or found.fx is not None:
            return
        balances = [found.balance_from, found.balance_to]
        views = await self.ask(lambda c: c.get_balances(balances))
        if isinstance(views, Lost) or calm != self.calm or self.cluster.down():
            return
        key = found.hold_id or found.id
        for balance_id in balances:
            book = self.cluster.book_of(partition_of(balance_id, self.cluster.settings.partitions))
            r = book.reservations.get((key, balance_id))
            stale = r is not None and (found.capture_seq is None or r.posts < found.capture_seq)
            assert not stale, f"a read of {balance_id} after {payment_id} was answered does not show it"
        self.count("reads_checked")

    OPERATIONS = (
        (payment, 30),
        (deposit_or_withdrawal, 6),
        (transfer, 8),
        (exchange, 5),
        (hold, 8),
        (close_hold, 8),
        (refund, 5),
        (read, 15),
    )

    async def client(self) -> None:
        ops, weights = zip(*self.OPERATIONS, strict=True)
        while not self.stop:
            [op] = self.rng.choices(ops, weights)
            await op(self)
            await asyncio.sleep(self.rng.uniform(0, 0.01))
