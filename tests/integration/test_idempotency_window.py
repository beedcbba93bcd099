"""Idempotency keys replay within their window and are forgotten after it, including
keys evicted from memory (looked up in the journal) and keys from before a restart."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from actors.clock import now_ms
from ledger.results import PaymentStatus
from tests.support.local import LocalLedger
from tests.support.scenario import open_funded_balances, payment


def keyed(balance_from: str, balance_to: str, amount_minor: int, key: str, fingerprint: bytes = b"fp"):  # type: ignore[no-untyped-def]
    return msgspec.structs.replace(
        payment(balance_from, balance_to, amount_minor), idempotency_key=key, fingerprint=fingerprint
    )


class MovableClock:
    """The coordinators' clock, which a test moves forward."""

    def __init__(self) -> None:
        self.ahead_ms = 0

    def __call__(self) -> int:
        return now_ms() + self.ahead_ms


@pytest.fixture
async def ledger(tmp_path: Path):  # type: ignore[no-untyped-def]
    clock = MovableClock()
    ledger = await LocalLedger(tmp_path, clock=clock, idempotency_window_s=60, idempotency_keys_in_memory_max=3).start()
    yield ledger
    await ledger.stop()


async def test_key_replays_within_window_and_is_forgotten_after(ledger: LocalLedger) -> None:
    _, (a, b), _ = await open_funded_balances(ledger.client, 2, 100)
    [first] = await ledger.client.pay_outcomes([keyed(a, b, 10, "admin:k")])
    [again] = await ledger.client.pay_outcomes([keyed(a, b, 10, "admin:k")])
    assert again.replayed and again.payment == first.payment
    [other] = await ledger.client.pay_outcomes([keyed(a, b, 10, "admin:k", b"other")])
    assert other.conflict and other.payment is None

    ledger.clock.ahead_ms = 61_000  # type: ignore[attr-defined]
    [later] = await ledger.client.pay_outcomes([keyed(a, b, 10, "admin:k", b"other")])
    assert not later.replayed and later.payment.status == PaymentStatus.SUCCESS
    assert later.payment.id != first.payment.id


async def test_keys_evicted_from_memory_are_found_on_disk(ledger: LocalLedger) -> None:
    _, (a, b), _ = await open_funded_balances(ledger.client, 2, 100)
    firsts = [(await ledger.client.pay_outcomes([keyed(a, b, 1, f"admin:k{n}")]))[0] for n in range(6)]
    assert len(ledger.coordinator().book.keys) <= 3  # the oldest keys now live only in the journal
    for n, first in enumerate(firsts):
        [again] = await ledger.client.pay_outcomes([keyed(a, b, 1, f"admin:k{n}")])
        assert again.replayed and again.payment.id == first.payment.id
    balances = {v.balance_id: v.amount_minor for v in await ledger.client.all_balances()}
    assert balances[b] == 100 + 6  # each key paid once


async def test_keys_survive_a_restart(ledger: LocalLedger) -> None:
    _, (a, b), _ = await open_funded_balances(ledger.client, 2, 100)
    [first] = await ledger.client.pay_outcomes([keyed(a, b, 7, "acc_x:order-9")])
    await ledger.stop()
    await ledger.start()
    [again] = await ledger.client.pay_outcomes([keyed(a, b, 7, "acc_x:order-9")])
    assert again.replayed and again.payment == first.payment
