"""The gateway's batcher: concurrent submissions share calls, and a payment is known as
unsettled from its submission until its call answers (a client told 202 may ask for it
before the coordinator has it)."""

from __future__ import annotations

import asyncio

from gateway.batcher import PaymentBatcher
from ledger.messages import PaymentRequest
from ledger.outcomes import Outcome, pending_record


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
    assert batcher.unanswered("pay_1") == request(1)  # before the call has even been sent
    later = [asyncio.ensure_future(batcher.submit([request(n)])) for n in (2, 3)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert coordinators.calls == [["pay_1"]]  # one call out; the others queue for the next
    assert batcher.unanswered("pay_3") == request(3) and batcher.unanswered("pay_9") is None

    coordinators.answer.set()
    outcomes = await asyncio.gather(first, *later)
    assert [o[0].payment.id for o in outcomes] == ["pay_1", "pay_2", "pay_3"]  # type: ignore[union-attr]
    assert coordinators.calls == [["pay_1"], ["pay_2", "pay_3"]] and sizes == [1, 2]
    assert all(batcher.unanswered(f"pay_{n}") is None for n in (1, 2, 3))


class AnsweredOneByOne:
    """Stands in for the LedgerClient: each call waits until the test answers that call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.answers: list[asyncio.Event] = []

    async def pay_outcomes(self, requests: list[PaymentRequest]) -> list[Outcome]:
        self.calls.append([r.payment_id for r in requests])
        answer = asyncio.Event()
        self.answers.append(answer)
        await answer.wait()
        return [Outcome(pending_record(r)) for r in requests]


async def settle_loop() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_free_slot_waits_for_a_fair_share_while_another_batch_is_out() -> None:
    # Taking whatever is queued when a slot frees locks 64 clients into batches of 1 and 62:
    # the second slot then overlaps nothing. A free slot waits for its share instead.
    coordinators = AnsweredOneByOne()
    batcher = PaymentBatcher(coordinators, batch_max=100, in_flight_max=2)  # type: ignore[arg-type]
    big = batcher.submit([request(n) for n in range(6)])
    await settle_loop()
    assert coordinators.calls == [[f"pay_{n}" for n in range(6)]]  # nothing out: it goes at once

    singles = [batcher.submit([request(n)]) for n in range(6, 11)]
    await settle_loop()
    assert len(coordinators.calls) == 1  # 5 queued, 6 out: a share is ceil(11 / 2) = 6
    singles.append(batcher.submit([request(11)]))
    await settle_loop()
    assert coordinators.calls[1] == [f"pay_{n}" for n in range(6, 12)]  # the share has gathered

    late = [batcher.submit([request(n)]) for n in (12, 13)]
    await settle_loop()
    assert len(coordinators.calls) == 2  # both slots busy
    coordinators.answers[0].set()
    await big
    await settle_loop()
    assert len(coordinators.calls) == 2  # 6 out, 2 queued: below the share of 4, so they wait
    coordinators.answers[1].set()
    await asyncio.gather(*singles)
    await settle_loop()
    assert coordinators.calls[2] == ["pay_12", "pay_13"]  # nothing out: what is queued goes
    coordinators.answers[2].set()
    assert [o[0].payment.id for o in await asyncio.gather(*late)] == ["pay_12", "pay_13"]  # type: ignore[union-attr]


async def test_a_share_that_does_not_gather_goes_after_the_wait() -> None:
    # A batch out may be slow (a coordinator restarting): the clients queued behind it wait
    # share_wait_ms at most, not for that batch.
    coordinators = AnsweredOneByOne()
    batcher = PaymentBatcher(coordinators, batch_max=100, in_flight_max=2, share_wait_ms=30)  # type: ignore[arg-type]
    slow = batcher.submit([request(n) for n in range(6)])
    await settle_loop()
    few = batcher.submit([request(6), request(7)])
    await settle_loop()
    assert len(coordinators.calls) == 1  # below the share of 4: waiting
    for _ in range(100):
        if len(coordinators.calls) == 2:
            break
        await asyncio.sleep(0.01)
    assert coordinators.calls[1] == ["pay_6", "pay_7"] and not slow.done()  # sent while the slow one is out
    coordinators.answers[1].set()
    assert [o.payment.id for o in await few] == ["pay_6", "pay_7"]  # type: ignore[union-attr]
    coordinators.answers[0].set()
    await slow
