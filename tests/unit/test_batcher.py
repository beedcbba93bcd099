"""The gateway's batcher: concurrent submissions share calls, and a payment is known as
unsettled from its submission until its call answers (a client told 202 may ask for it
before the coordinator has it)."""

from __future__ import annotations

import asyncio

from actors.coordinator import Outcome, pending_record
from gateway.batcher import PaymentBatcher
from ledger.messages import PaymentRequest


class HeldCoordinators:
    """Stands in for the LedgerClient: every call waits until the test lets it answer."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.answer = asyncio.Event()

    async def pay_outcomes(self, requests: list[PaymentRequest]) -> list[Outcome]:
        self.calls.append([r.payment_id for r in requests])
        await self.answer.wait()
        return [Outcome(pending_record(r)) for r in requests]


def request(n: int) -> PaymentRequest:
    return PaymentRequest(f"pay_{n}", "bal_a", "bal_b", 100, "USD", 0)


async def test_a_payment_is_unsettled_from_submission_until_its_call_answers() -> None:
    coordinators = HeldCoordinators()
    sizes: list[int] = []
    batcher = PaymentBatcher(coordinators, batch_max=8, in_flight_max=1, on_batch=sizes.append)  # type: ignore[arg-type]
    first = asyncio.ensure_future(batcher.submit([request(1)]))
    await asyncio.sleep(0)
    assert batcher.unsettled("pay_1") == request(1)  # before the call has even been sent
    later = [asyncio.ensure_future(batcher.submit([request(n)])) for n in (2, 3)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert coordinators.calls == [["pay_1"]]  # one call out; the others queue for the next
    assert batcher.unsettled("pay_3") == request(3) and batcher.unsettled("pay_9") is None

    coordinators.answer.set()
    outcomes = await asyncio.gather(first, *later)
    assert [o[0].payment.id for o in outcomes] == ["pay_1", "pay_2", "pay_3"]  # type: ignore[union-attr]
    assert coordinators.calls == [["pay_1"], ["pay_2", "pay_3"]] and sizes == [1, 2]
    assert all(batcher.unsettled(f"pay_{n}") is None for n in (1, 2, 3))
