"""Delivery of events to endpoints: per endpoint, a task that reads the events after its
positions as a stream does (`events_after`), POSTs each it wants, signed, with a bounded
number in flight, journals a failed one with the time of its next try, then journals the
endpoint's new positions. After a crash it resumes from the last positions journaled, so
an event goes at least once (receivers dedupe by its id); retries resume from their
journaled attempts, reading the event again from its journal.

Payments never wait for any of this. Each endpoint holds at most `webhook_retrying_max`
events waiting to be retried; past that it reads no new events, which wait in their
journals until the receiver recovers. Delivery runs only on CPU time nothing else wants
(SCHED_IDLE), so a busy machine serves payments first and deliveries catch up after.
Deliveries of one endpoint may arrive out of order, as with Stripe."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Awaitable

import aiohttp
import msgspec

from actors.client import LedgerClient
from actors.clock import now_ms, random_bytes
from actors.directory import Directory
from actors.events import EventReads
from actors.settings import Settings
from actors.webhooks.addresses import GuardedResolver, RefusedAddress, literal_refusal
from actors.webhooks.state import Endpoint, WebhookState
from api.events import event_of_record
from ledger.ids import make_id
from ledger.records import DeliveryAttempted, DeliveryProgress, Record, RecordCodec, event_of
from ledger.records import event_id as make_event_id
from ledger.webhooks import next_attempt_ms
from rayledger.webhooks import SIGNATURE_HEADER, signature

log = logging.getLogger("rayledger.webhooks")

PAGE = 200  # events read from each journal per step
POLL_S = 0.25  # how often an idle endpoint looks for new events
WRITABLE_WAIT_S = 1.0  # how often a paused endpoint checks whether its journal is writable again
ANSWER_BYTES_MAX = 64 * 1024  # of a receiver's answer, read and dropped
ERROR_CHARS_MAX = 200


def idle_priority() -> None:
    """Every thread of this process runs only when a CPU would otherwise idle: SCHED_IDLE
    (or, where it is refused, the lowest nice). Linux sets both per thread; threads made
    later inherit them from the one that makes them."""
    if not os.path.isdir("/proc/self/task"):
        return
    for tid in map(int, os.listdir("/proc/self/task")):
        try:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        except (OSError, AttributeError):
            try:
                os.setpriority(os.PRIO_PROCESS, tid, 19)
            except OSError:
                pass  # the thread has ended


class Delivery:
    def __init__(self, settings: Settings, state: WebhookState, client: LedgerClient, private_allowed: bool) -> None:
        self._settings = settings
        self._state = state
        self._client = client
        self._directory = Directory(client, settings.directory_cache_max)  # renders events as the admin sees them
        self._private_allowed = private_allowed
        self._codec = RecordCodec()
        self._session: aiohttp.ClientSession | None = None
        self._closing = False

    def open(self) -> None:
        """Start delivering to every endpoint (once): the ledger's other actors are up by now."""
        if self._session is not None:
            return
        if self._settings.webhook_idle_priority:
            idle_priority()  # threads Ray made after __init__
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(self._private_allowed), limit=0)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._settings.webhook_timeout_s),
            headers={"User-Agent": "rayledger-webhooks/1"},
        )
        for endpoint in self._state.endpoints.values():
            self.start(endpoint)

    def start(self, endpoint: Endpoint) -> None:
        """Deliver to `endpoint` from now on (if delivery runs: else `open` starts it)."""
        if self._session is not None and endpoint.task is None:
            endpoint.literal_refusal = literal_refusal(endpoint.created.url, self._private_allowed)
            endpoint.task = asyncio.get_running_loop().create_task(self._deliver_loop(endpoint))

    def stop(self, endpoint: Endpoint) -> None:
        if endpoint.task is not None:
            endpoint.task.cancel()

    def abandon(self) -> None:
        """Stop at once, journaling nothing more (a simulated crash)."""
        self._closing = True
        for endpoint in self._state.endpoints.values():
            self.stop(endpoint)
        if self._session is not None:
            asyncio.get_running_loop().create_task(self._session.close())

    async def close(self) -> None:
        self._closing = True
        for endpoint in self._state.endpoints.values():
            self.stop(endpoint)
        await asyncio.gather(
            *(e.task for e in self._state.endpoints.values() if e.task is not None), return_exceptions=True
        )
        if self._session is not None:
            await self._session.close()

    async def _deliver_loop(self, endpoint: Endpoint) -> None:
        """Retries that are due, then the next page of new events, until the endpoint goes."""
        gate = asyncio.Semaphore(self._settings.webhook_concurrency)
        while endpoint.created.endpoint_id in self._state.endpoints and not self._closing:
            try:
                if not self._state.journal.writable:  # nothing could be journaled: deliver nothing
                    await asyncio.sleep(WRITABLE_WAIT_S)
                    continue
                busy = await self._retry_due(endpoint, gate)
                if len(endpoint.retrying) < self._settings.webhook_retrying_max:
                    busy = await self._deliver_new(endpoint, gate) or busy
                self._state.maybe_snapshot()
                if not busy:
                    await asyncio.sleep(POLL_S)
            except asyncio.CancelledError:
                raise
            except Exception:  # an event journal unreachable for now (restarting): try again
                log.exception("webhook delivery step failed for %s", endpoint.created.endpoint_id)
                await asyncio.sleep(WRITABLE_WAIT_S)

    async def _deliver_new(self, endpoint: Endpoint, gate: asyncio.Semaphore) -> bool:
        found = await self._client.events_after_encoded(endpoint.positions, PAGE)
        if not found:
            return False
        positions = dict(endpoint.positions)
        room = self._settings.webhook_retrying_max - len(endpoint.retrying)  # were every one of them to fail
        sends: list[Awaitable[None]] = []
        for source, seq, body in found:
            record = self._codec.decode(body)
            kind = event_of(record)
            assert kind is not None
            event_id = make_event_id(kind[1], source, seq)
            if endpoint.wants(kind[0]) and event_id not in endpoint.retrying:
                if len(sends) == room:
                    break  # the rest waits in its journal
                sends.append(self._send(endpoint, gate, source, seq, event_id, record, 1, None))
            positions[source] = max(positions.get(source, 0), seq)
        await asyncio.gather(*sends)
        if endpoint.created.endpoint_id in self._state.endpoints:
            self._state.commit(DeliveryProgress(endpoint.created.endpoint_id, positions))
        return True

    async def _retry_due(self, endpoint: Endpoint, gate: asyncio.Semaphore) -> bool:
        now = now_ms()
        due = sorted((a for a in endpoint.retrying.values() if a.next_at_ms <= now), key=lambda a: a.next_at_ms)
        if not due:
            return False

        async def retry(last: DeliveryAttempted) -> None:
            peer = self._client.event_peer(last.source)
            page = await peer.invoke(EventReads.events_after_encoded, last.seq - 1, 1)
            if not page or page[0][0] != last.seq:  # journals keep every event: only a bug loses one
                raise AssertionError(f"event {last.event_id} is gone from {last.source} at {last.seq}")
            record = self._codec.decode(page[0][1])
            await self._send(endpoint, gate, last.source, last.seq, last.event_id, record, last.attempt + 1, last)

        await asyncio.gather(*(retry(a) for a in due[: self._settings.webhook_retrying_max]))
        return True

    async def _send(
        self,
        endpoint: Endpoint,
        gate: asyncio.Semaphore,
        source: str,
        seq: int,
        event_id: str,
        record: Record,
        attempt: int,
        last: DeliveryAttempted | None,
    ) -> None:
        assert self._session is not None
        shown = await event_of_record(self._directory, event_id, record, "admin")
        body = msgspec.json.encode(shown)
        status, error = 0, None
        async with gate:
            started = time.monotonic()
            stamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature(endpoint.secret, stamp, body),
            }
            try:
                if endpoint.literal_refusal is not None:
                    raise RefusedAddress(endpoint.literal_refusal)
                async with self._session.post(
                    endpoint.created.url, data=body, headers=headers, allow_redirects=False
                ) as answer:
                    status = answer.status
                    await answer.content.read(ANSWER_BYTES_MAX)
                if not 200 <= status < 300:
                    error = f"answered {status}"
            except RefusedAddress as exc:
                error = f"refused: {exc}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"[:ERROR_CHARS_MAX] if str(exc) else type(exc).__name__
            duration_ms = int((time.monotonic() - started) * 1000)
        if endpoint.created.endpoint_id not in self._state.endpoints:
            return  # deleted meanwhile: nothing more is journaled for it
        now = now_ms()
        first_at = now if last is None else last.first_at_ms
        next_at = 0 if error is None else next_attempt_ms(first_at, attempt, now, random.random())
        self._state.commit(
            DeliveryAttempted(
                make_id("dlv", now, random_bytes(10)),
                endpoint.created.endpoint_id,
                event_id,
                shown.type,
                source,
                seq,
                attempt,
                first_at,
                now,
                status,
                error,
                next_at,
                duration_ms,
            )
        )
