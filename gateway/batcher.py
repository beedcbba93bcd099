"""Gathers concurrent payment requests into one call to the coordinators.

One actor call per HTTP request caps the gateway near 1.7k requests/s on two cores;
combined calls carry 10k+ payments/s (docs/design.md §6). No timer: an idle ledger sends a request
at once, and a busy one batches more.

With `in_flight_max` slots, a slot that frees while another batch is out waits until the
queue holds a fair share, ceil((payments out + queued) / in_flight_max), or until nothing is
out. Taking whatever is queued the moment a slot frees was measured to lock into a
degenerate rhythm: the first client to come back after a big batch rode alone, the next 62
waited a whole cycle for the one after (batch sizes 1, 62, 1, 62...), so the second slot
never overlapped anything. Fair shares keep the batches even (32 and 32 at 64 clients) and
staggered: one is on the wire while the loop answers the other's clients (benchmarks/RESULTS.md).
A share never waits for clients that are not coming: when the last batch out answers, or
`share_wait_ms` after the slot freed (a batch out may be slow: a coordinator restarting, a
large batch request), what is queued goes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from actors.client import LedgerClient
from ledger.messages import PaymentRequest, TransferRequest
from ledger.outcomes import Outcome

Request = PaymentRequest | TransferRequest  # each tracked by its `payment_id` (a transfer's id)


class _Waiting:
    """The outcomes one submission waits for (a batch request submits many payments)."""

    __slots__ = ("future", "left", "outcomes")

    def __init__(self, future: asyncio.Future[list[Outcome]], count: int) -> None:
        self.future = future
        self.outcomes: list[Outcome | None] = [None] * count
        self.left = count


class PaymentBatcher:
    def __init__(
        self,
        client: LedgerClient,
        batch_max: int,
        in_flight_max: int,
        on_batch: Callable[[int], None] = lambda payments: None,  # metrics
        share_wait_ms: float = 10.0,
        send: Callable[[list[Any]], Awaitable[list[Outcome]]] | None = None,  # default: payments
    ) -> None:
        assert batch_max >= 1 and in_flight_max >= 1
        self.on_batch = on_batch
        self.client = client
        self._send_call = send if send is not None else client.pay_outcomes
        self.batch_max = batch_max
        self.in_flight_max = in_flight_max
        self.in_flight = 0
        self._out = 0  # payments in the batches in flight
        self._share_wait_s = share_wait_ms / 1000
        self._share_timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._queue: deque[tuple[Request, _Waiting, int]] = deque()
        # Submitted and not answered yet: a client told 202 may ask before the coordinator
        # has the payment (Ray does not order an async actor's calls), and must see it pending.
        self._unanswered: dict[str, Request] = {}

    def unanswered(self, payment_id: str) -> Request | None:
        return self._unanswered.get(payment_id)

    def submit(self, requests: list[Request]) -> asyncio.Future[list[Outcome]]:
        """The outcomes, in order, once their calls answer. A future, not a coroutine: a
        request waits on it directly, with no task of its own (a task per payment was a
        visible part of the ingress's CPU)."""
        assert requests
        waiting = _Waiting(asyncio.get_running_loop().create_future(), len(requests))
        for n, r in enumerate(requests):
            self._unanswered[r.payment_id] = r
            self._queue.append((r, waiting, n))
        self._dispatch()
        return waiting.future

    def _dispatch(self, waited: bool = False) -> None:
        while self._queue and self.in_flight < self.in_flight_max:
            fair_share = -(-(self._out + len(self._queue)) // self.in_flight_max)
            if self.in_flight and len(self._queue) < fair_share and not waited:
                if self._share_timer is None:  # the share has not gathered yet: wait, but not for long
                    self._share_timer = asyncio.get_running_loop().call_later(self._share_wait_s, self._share_waited)
                return
            waited = False
            if self._share_timer is not None:
                self._share_timer.cancel()
                self._share_timer = None
            batch = [self._queue.popleft() for _ in range(min(self.batch_max, len(self._queue)))]
            self._out += len(batch)
            self.in_flight += 1
            self.on_batch(len(batch))
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._sending.add(task)  # the loop holds tasks only weakly
            task.add_done_callback(self._sending.discard)

    def _share_waited(self) -> None:
        self._share_timer = None
        self._dispatch(waited=True)

    async def _send(self, batch: list[tuple[Request, _Waiting, int]]) -> None:
        try:
            outcomes = await self._send_call([r for r, _, _ in batch])
        except Exception as exc:  # an actor restarting, a journal down: every waiter learns it
            for _, waiting, _ in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(exc)
        else:
            for (_, waiting, n), outcome in zip(batch, outcomes, strict=True):
                waiting.outcomes[n] = outcome
                waiting.left -= 1
                if not waiting.left and not waiting.future.done():
                    waiting.future.set_result(waiting.outcomes)  # type: ignore[arg-type]
        finally:
            for r, _, _ in batch:
                self._unanswered.pop(r.payment_id, None)
            self.in_flight -= 1
            self._out -= len(batch)
            self._dispatch()
