"""Webhooks: endpoints, and the deliveries of events to them (API "Webhooks").

One actor owns every endpoint and its own journal. Events are not copied into it: each
endpoint keeps, per event journal (the registry's and each coordinator's), the position
up to which its events are settled, and reads the events after it as a stream does
(`events_after`). A page of events is POSTed, signed, with a bounded number in flight; a
failed one is journaled with the time of its next try; then the endpoint's new position
is journaled. After a crash delivery resumes from the last position journaled, so an
event goes at least once (receivers dedupe by its id), and retries resume from their
journaled attempts, reading the event again from its journal.

Payments never wait for any of this. Each endpoint holds at most `webhook_retrying_max`
events waiting to be retried; past that it reads no new events, which wait in their
journals until the receiver recovers. Delivery runs only on CPU time nothing else wants
(SCHED_IDLE), so a busy machine serves payments first and deliveries catch up after.
Deliveries of one endpoint may arrive out of order, as with Stripe.

Addresses are checked when an endpoint is made and again on every connection, on the
addresses actually connected to (a name that resolves elsewhere later gains nothing).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import random
import socket
import time
from dataclasses import dataclass, field

import aiohttp
import msgspec
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from actors.client import LedgerClient
from actors.directory import Directory
from actors.events import EventReads
from actors.logs import event
from actors.memory import freeze_long_lived_state
from actors.peers import PeerLookup, ray_lookup
from actors.settings import Settings
from actors.telemetry import Telemetry, placement
from actors.topology import WEBHOOKS_NAME
from api.events import event_of_record
from journal import Journal, SqliteJournal
from journal.private import write_private
from ledger.ids import make_id
from ledger.records import (
    EVENT_TYPES,
    DeliveryAttempted,
    DeliveryProgress,
    Record,
    RecordCodec,
    WebhookEndpointCreated,
    WebhookEndpointDeleted,
    event_of,
)
from ledger.records import event_id as make_event_id
from ledger.sealing import xor_sealed
from ledger.views import Idem
from ledger.webhooks import address_refusal, next_attempt_ms
from rayledger.webhooks import SIGNATURE_HEADER, signature

log = logging.getLogger("rayledger.webhooks")

PAGE = 200  # events read from each journal per step
POLL_S = 0.25  # how often an idle endpoint looks for new events
WRITABLE_WAIT_S = 1.0  # how often a paused endpoint checks whether its journal is writable again
ANSWER_BYTES_MAX = 64 * 1024  # of a receiver's answer, read and dropped
ERROR_CHARS_MAX = 200
RESOLVE_TIMEOUT_S = 5.0  # a creation whose host does not resolve by then is refused
ALL_EVENTS = "*"


class RefusedAddress(OSError):
    """A delivery would go to an address the SSRF rules forbid."""


class EndpointMade(msgspec.Struct, frozen=True):
    """An endpoint made (`replayed`: by an earlier call with the same Idempotency-Key), or
    `refusal`: "idempotency_key_reused", or why its URL is refused."""

    created: WebhookEndpointCreated | None = None
    refusal: str | None = None
    replayed: bool = False
    secret: str | None = None  # the signing secret, for the creator's answer alone


class _Snapshot(msgspec.Struct, frozen=True):
    endpoints: list[WebhookEndpointCreated]
    positions: dict[str, dict[str, int]]
    retrying: list[DeliveryAttempted]


@dataclass(eq=False)
class _Endpoint:
    created: WebhookEndpointCreated
    secret: str  # unsealed: what signs its deliveries
    positions: dict[str, int]
    retrying: dict[str, DeliveryAttempted] = field(default_factory=dict)  # event id -> its last failed attempt
    task: asyncio.Task[None] | None = None
    literal_refusal: str | None = None  # the URL names an IP the rules forbid (settings may change per start)

    def wants(self, event_type: str) -> bool:
        return ALL_EVENTS in self.created.events or event_type in self.created.events


class _GuardedResolver(AbstractResolver):
    """Resolves as aiohttp does, then keeps only the addresses a delivery may go to."""

    def __init__(self, private_allowed: bool) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._private_allowed = private_allowed

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed = [r for r in found if address_refusal(r["host"], self._private_allowed) is None]
        if not allowed:
            raise RefusedAddress(address_refusal(found[0]["host"], self._private_allowed))
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def private_targets_allowed(settings: Settings) -> bool:
    """The setting, or by default: whether the ledger itself listens on loopback only."""
    if settings.webhook_private_targets is not None:
        return settings.webhook_private_targets
    try:
        return ipaddress.ip_address(settings.host).is_loopback
    except ValueError:
        return settings.host == "localhost"


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


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def webhooks_journal_path(settings: Settings) -> str:
    return str(settings.data_path / "webhooks.sqlite")


SECRETS_KEY_FILE = "webhook_secrets.key"
_SEAL_CONTEXT = b"rayledger: a webhook endpoint's signing secret"


def secrets_key(settings: Settings) -> bytes:
    """The key that seals signing secrets in the journal: random, made on first use, kept
    0600 in the data directory and never journaled, so a journal or snapshot alone (a
    copy sent for an audit, say) reveals no secret. Not derived from the admin token: a
    new admin token must not unsign every endpoint."""
    path = settings.data_path / SECRETS_KEY_FILE
    write_private(path, os.urandom(32))  # the first start makes it; later ones find it
    key = path.read_bytes()
    assert len(key) == 32, f"{path} is not a secrets key"
    return key


def seal_secret(key: bytes, endpoint_id: str, secret: str) -> bytes:
    return xor_sealed(key, _SEAL_CONTEXT, endpoint_id, secret.encode())


def unseal_secret(key: bytes, created: WebhookEndpointCreated) -> str:
    if created.sealed_secret is None:
        return created.secret  # made before secrets were sealed
    raw = xor_sealed(key, _SEAL_CONTEXT, created.endpoint_id, created.sealed_secret)
    # Every secret starts so: anything else means the key file was replaced or lost.
    assert raw.startswith(b"whsec_"), f"{SECRETS_KEY_FILE} does not unseal endpoint {created.endpoint_id}"
    return raw.decode()


class WebhookDispatcher:
    def __init__(self, settings: Settings, peers: PeerLookup | None = None, journal: Journal | None = None) -> None:
        if settings.webhook_idle_priority:
            idle_priority()
        self.settings = settings
        self._peers = peers
        self.journal = journal or SqliteJournal(
            webhooks_journal_path(settings),
            busy_timeout_ms=settings.journal_busy_timeout_ms,
            commit_on_loop=settings.journal_commit_on_loop,
        )
        self.endpoints: dict[str, _Endpoint] = {}
        self._secrets_key = secrets_key(settings)
        self._codec = RecordCodec()
        self._creating = asyncio.Lock()
        self._private_allowed = private_targets_allowed(settings)
        self._session: aiohttp.ClientSession | None = None
        self._client: LedgerClient | None = None
        self._directory: Directory | None = None
        self._snapshot_seq = 0
        self._snapshot_task: asyncio.Task[None] | None = None
        self._closing = False
        started = time.perf_counter()
        loaded = self.journal.load()
        if loaded.snapshot is not None:
            snap = msgspec.msgpack.decode(loaded.snapshot, type=_Snapshot)
            for created in snap.endpoints:
                self.endpoints[created.endpoint_id] = self._endpoint(created, snap.positions[created.endpoint_id])
            for attempt in snap.retrying:
                self.endpoints[attempt.endpoint_id].retrying[attempt.event_id] = attempt
            self._snapshot_seq = loaded.snapshot_seq
        replayed = 0
        for stored in loaded.records:
            self._apply(stored.record)
            replayed += 1
        self.telemetry = Telemetry(settings.namespace, WEBHOOKS_NAME)
        self.telemetry.watch(self.journal, "webhooks")
        freeze_long_lived_state()
        event(
            log,
            "recovered",
            actor=WEBHOOKS_NAME,
            endpoints=len(self.endpoints),
            retrying=sum(len(e.retrying) for e in self.endpoints.values()),
            records_replayed=replayed,
            seconds=round(time.perf_counter() - started, 3),
            **placement(),
        )

    def __repr__(self) -> str:
        return WEBHOOKS_NAME

    def _apply(self, r: Record) -> None:
        if isinstance(r, DeliveryAttempted):
            endpoint = self.endpoints.get(r.endpoint_id)
            if endpoint is not None:
                if r.next_at_ms:
                    endpoint.retrying[r.event_id] = r
                else:
                    endpoint.retrying.pop(r.event_id, None)
        elif isinstance(r, DeliveryProgress):
            if r.endpoint_id in self.endpoints:
                self.endpoints[r.endpoint_id].positions = r.positions
        elif isinstance(r, WebhookEndpointCreated):
            self.endpoints[r.endpoint_id] = self._endpoint(r, dict(r.positions))
        elif isinstance(r, WebhookEndpointDeleted):
            self.endpoints.pop(r.endpoint_id, None)
        else:
            raise AssertionError(f"not a webhooks record: {r!r}")

    def _sealed(self, endpoint: _Endpoint) -> WebhookEndpointCreated:
        """The endpoint as snapshots keep it: sealed, even one journaled before secrets were
        (its journal frames keep the secret as written; recreating the endpoint drops it)."""
        if endpoint.created.sealed_secret is not None:
            return endpoint.created
        sealed = seal_secret(self._secrets_key, endpoint.created.endpoint_id, endpoint.secret)
        return msgspec.structs.replace(endpoint.created, secret="", sealed_secret=sealed)

    def _endpoint(self, created: WebhookEndpointCreated, positions: dict[str, int]) -> _Endpoint:
        return _Endpoint(created, unseal_secret(self._secrets_key, created), positions)

    def _commit(self, record: Record) -> None:
        self.journal.append(record)
        self._apply(record)

    # -- lifecycle ------------------------------------------------------------------------
    async def ready(self) -> bool:
        """Start delivering (once): the ledger's other actors are up by now."""
        if self._session is None:
            if self.settings.webhook_idle_priority:
                idle_priority()  # threads Ray made after __init__
            # The gateway's rendering, as the admin sees it (imported late: the gateway imports the actors).
            peers = self._peers or ray_lookup(self.settings.namespace)
            self._client = LedgerClient(self.settings, peers)
            self._directory = Directory(self._client, self.settings.directory_cache_max)
            connector = aiohttp.TCPConnector(resolver=_GuardedResolver(self._private_allowed), limit=0)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.settings.webhook_timeout_s),
                headers={"User-Agent": "rayledger-webhooks/1"},
            )
            for endpoint in self.endpoints.values():
                self._start(endpoint)
        return True

    def _start(self, endpoint: _Endpoint) -> None:
        if self._session is not None and endpoint.task is None:
            endpoint.literal_refusal = _literal_refusal(endpoint.created.url, self._private_allowed)
            endpoint.task = asyncio.get_running_loop().create_task(self._deliver_loop(endpoint))

    def abandon(self) -> None:
        """Stop delivering at once, journaling nothing more (a simulated crash)."""
        self._closing = True
        for endpoint in self.endpoints.values():
            if endpoint.task is not None:
                endpoint.task.cancel()
        if self._session is not None:
            asyncio.get_running_loop().create_task(self._session.close())

    async def close(self) -> None:
        self._closing = True
        for endpoint in self.endpoints.values():
            if endpoint.task is not None:
                endpoint.task.cancel()
        await asyncio.gather(*(e.task for e in self.endpoints.values() if e.task is not None), return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        await self.journal.close()

    # -- endpoints ------------------------------------------------------------------------
    async def create_endpoint(
        self, url: str, events: list[str], description: str | None, idem: Idem | None = None
    ) -> EndpointMade:
        """The endpoint made (or the one `idem` made before), or why not."""
        await self.ready()
        async with self._creating:  # two calls with one Idempotency-Key make one endpoint
            return await self._create_endpoint(url, events, description, idem)

    async def _create_endpoint(
        self, url: str, events: list[str], description: str | None, idem: Idem | None
    ) -> EndpointMade:
        if idem is not None:
            window_start_ms = _now_ms() - self.settings.idempotency_window_s * 1000
            for e in self.endpoints.values():
                if e.created.idem_lookup == idem.lookup and e.created.created_at_ms >= window_start_ms:
                    if e.created.idem_fingerprint != idem.fingerprint:
                        return EndpointMade(refusal="idempotency_key_reused")
                    return EndpointMade(e.created, replayed=True, secret=e.secret)
        refused = await self._refusal(url)
        if refused is not None:
            return EndpointMade(refusal=refused)
        assert all(e == ALL_EVENTS or e in EVENT_TYPES for e in events), events
        assert self._client is not None
        positions = await self._client.event_positions()
        now = _now_ms()
        endpoint_id = make_id("we", now, os.urandom(10))
        secret = "whsec_" + os.urandom(24).hex()
        created = WebhookEndpointCreated(
            endpoint_id,
            url,
            sorted(set(events)),
            "",
            now,
            positions,
            description,
            None if idem is None else idem.lookup,
            None if idem is None else idem.fingerprint,
            sealed_secret=seal_secret(self._secrets_key, endpoint_id, secret),
        )
        self._commit(created)
        await self.journal.durable()
        self._start(self.endpoints[created.endpoint_id])
        return EndpointMade(created, secret=secret)

    async def _refusal(self, url: str) -> str | None:
        try:
            parsed = URL(url)
        except (ValueError, TypeError):
            return "url is not a URL"
        if parsed.scheme not in ("http", "https") or not parsed.host:
            return "url must be an http or https URL with a host"
        if parsed.user is not None or parsed.password is not None:
            return "url must not carry credentials"
        try:
            found = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(parsed.host, parsed.port, type=socket.SOCK_STREAM),
                RESOLVE_TIMEOUT_S,
            )
        except (OSError, UnicodeError, TimeoutError):
            return f"url's host {parsed.host} does not resolve"
        for address in dict.fromkeys(str(info[4][0]) for info in found):
            reason = address_refusal(address, self._private_allowed)
            if reason is not None:
                return f"url refused: {reason}"
        return None

    async def get_endpoint(self, endpoint_id: str) -> tuple[WebhookEndpointCreated, int] | None:
        """The endpoint and how many events wait for a retry."""
        endpoint = self.endpoints.get(endpoint_id)
        return None if endpoint is None else (endpoint.created, len(endpoint.retrying))

    async def list_endpoints(self) -> list[tuple[WebhookEndpointCreated, int]]:
        return [
            (e.created, len(e.retrying)) for e in sorted(self.endpoints.values(), key=lambda e: e.created.endpoint_id)
        ]

    async def delete_endpoint(self, endpoint_id: str) -> bool:
        endpoint = self.endpoints.get(endpoint_id)
        if endpoint is None:
            return False
        if endpoint.task is not None:
            endpoint.task.cancel()
        self._commit(WebhookEndpointDeleted(endpoint_id, _now_ms()))
        await self.journal.durable()
        return True

    async def deliveries(
        self, endpoint_id: str, limit: int, before_id: str | None, after_id: str | None, ascending: bool
    ) -> list[DeliveryAttempted] | None:
        """The endpoint's delivery log (every attempt), newest first; None if no such endpoint."""
        if endpoint_id not in self.endpoints:
            return None
        await self.journal.durable()
        found = await self.journal.tagged(
            f"wd:{endpoint_id}", limit=limit, before_id=before_id, after_id=after_id, ascending=ascending
        )
        return [s.record for s in found]  # type: ignore[misc]

    # -- delivery -------------------------------------------------------------------------
    async def _deliver_loop(self, endpoint: _Endpoint) -> None:
        """Retries that are due, then the next page of new events, until the endpoint goes."""
        gate = asyncio.Semaphore(self.settings.webhook_concurrency)
        while endpoint.created.endpoint_id in self.endpoints and not self._closing:
            try:
                if not self.journal.writable:  # nothing could be journaled: deliver nothing
                    await asyncio.sleep(WRITABLE_WAIT_S)
                    continue
                busy = await self._retry_due(endpoint, gate)
                if len(endpoint.retrying) < self.settings.webhook_retrying_max:
                    busy = await self._deliver_new(endpoint, gate) or busy
                self._maybe_snapshot()
                if not busy:
                    await asyncio.sleep(POLL_S)
            except asyncio.CancelledError:
                raise
            except Exception:  # an event journal unreachable for now (restarting): try again
                log.exception("webhook delivery step failed for %s", endpoint.created.endpoint_id)
                await asyncio.sleep(WRITABLE_WAIT_S)

    async def _deliver_new(self, endpoint: _Endpoint, gate: asyncio.Semaphore) -> bool:
        assert self._client is not None
        found = await self._client.events_after_encoded(endpoint.positions, PAGE)
        if not found:
            return False
        positions = dict(endpoint.positions)
        room = self.settings.webhook_retrying_max - len(endpoint.retrying)  # were every one of them to fail
        sends = []
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
        if endpoint.created.endpoint_id in self.endpoints:
            self._commit(DeliveryProgress(endpoint.created.endpoint_id, positions))
        return True

    async def _retry_due(self, endpoint: _Endpoint, gate: asyncio.Semaphore) -> bool:
        now = _now_ms()
        due = sorted((a for a in endpoint.retrying.values() if a.next_at_ms <= now), key=lambda a: a.next_at_ms)
        if not due:
            return False
        assert self._client is not None

        async def retry(last: DeliveryAttempted) -> None:
            peer = self._client.event_peer(last.source)  # type: ignore[union-attr]
            page = await peer.invoke(EventReads.events_after_encoded, last.seq - 1, 1)
            if not page or page[0][0] != last.seq:  # journals keep every event: only a bug loses one
                raise AssertionError(f"event {last.event_id} is gone from {last.source} at {last.seq}")
            record = self._codec.decode(page[0][1])
            await self._send(endpoint, gate, last.source, last.seq, last.event_id, record, last.attempt + 1, last)

        await asyncio.gather(*(retry(a) for a in due[: self.settings.webhook_retrying_max]))
        return True

    async def _send(
        self,
        endpoint: _Endpoint,
        gate: asyncio.Semaphore,
        source: str,
        seq: int,
        event_id: str,
        record: Record,
        attempt: int,
        last: DeliveryAttempted | None,
    ) -> None:
        assert self._session is not None and self._client is not None
        assert self._directory is not None
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
        if endpoint.created.endpoint_id not in self.endpoints:
            return  # deleted meanwhile: nothing more is journaled for it
        now = _now_ms()
        first_at = now if last is None else last.first_at_ms
        next_at = 0 if error is None else next_attempt_ms(first_at, attempt, now, random.random())
        self._commit(
            DeliveryAttempted(
                make_id("dlv", now, os.urandom(10)),
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

    # -- snapshots --------------------------------------------------------------------------
    def _maybe_snapshot(self) -> None:
        """Every `snapshot_every_records`: what the endpoints owe, so that a restart replays
        the attempts since, not all of them (the delivery log stays in the history index)."""
        if self.journal.last_seq - self._snapshot_seq < self.settings.snapshot_every_records:
            return
        if self._snapshot_task is not None and not self._snapshot_task.done():
            return
        snap = _Snapshot(
            [self._sealed(e) for e in self.endpoints.values()],
            {e.created.endpoint_id: dict(e.positions) for e in self.endpoints.values()},
            [a for e in self.endpoints.values() for a in e.retrying.values()],
        )
        write = self.journal.save_snapshot(msgspec.msgpack.encode(snap))

        async def store() -> None:
            self._snapshot_seq = await write

        self._snapshot_task = asyncio.get_running_loop().create_task(store())


def _literal_refusal(url: str, private_allowed: bool) -> str | None:
    """aiohttp connects to an IP in a URL without resolving it: checked here instead."""
    host = URL(url).host or ""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None  # a name: the resolver checks what it resolves to
    return address_refusal(host.strip("[]"), private_allowed)
