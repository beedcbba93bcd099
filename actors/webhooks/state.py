"""What the webhooks journal holds, in memory: every endpoint with, per event journal, the
position up to which its events are settled, and the events waiting for a retry (each
with its last failed attempt). Events are not copied here: they are read again from their
own journals. A snapshot every `snapshot_every_records` keeps what the endpoints owe, so a
restart replays the attempts since, not all of them (the delivery log stays in the
history index)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import msgspec

from actors.webhooks.signing_secrets import seal_secret, unseal_secret
from journal import Journal
from ledger.records import (
    DeliveryAttempted,
    DeliveryProgress,
    Record,
    WebhookEndpointCreated,
    WebhookEndpointDeleted,
)

ALL_EVENTS = "*"


class _Snapshot(msgspec.Struct, frozen=True):
    endpoints: list[WebhookEndpointCreated]
    positions: dict[str, dict[str, int]]
    retrying: list[DeliveryAttempted]


@dataclass(eq=False)
class Endpoint:
    created: WebhookEndpointCreated
    secret: str  # unsealed: what signs its deliveries
    positions: dict[str, int]
    retrying: dict[str, DeliveryAttempted] = field(default_factory=dict)  # event id -> its last failed attempt
    task: asyncio.Task[None] | None = None  # its delivery (actors.webhooks.delivery)
    literal_refusal: str | None = None  # the URL names an IP the rules forbid (settings may change per start)

    def wants(self, event_type: str) -> bool:
        return ALL_EVENTS in self.created.events or event_type in self.created.events


class WebhookState:
    def __init__(self, journal: Journal, secrets_key: bytes, snapshot_every_records: int) -> None:
        self.journal = journal
        self.endpoints: dict[str, Endpoint] = {}
        self._secrets_key = secrets_key
        self._snapshot_every = snapshot_every_records
        self._snapshot_seq = 0
        self._snapshot_task: asyncio.Task[None] | None = None

    def load(self) -> int:
        """The last snapshot, then the records after it; how many records were replayed."""
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
            self.apply(stored.record)
            replayed += 1
        return replayed

    def apply(self, r: Record) -> None:
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

    def commit(self, record: Record) -> None:
        self.journal.append(record)
        self.apply(record)

    def retrying(self) -> int:
        """Events waiting for a retry, over every endpoint."""
        return sum(len(e.retrying) for e in self.endpoints.values())

    def _endpoint(self, created: WebhookEndpointCreated, positions: dict[str, int]) -> Endpoint:
        return Endpoint(created, unseal_secret(self._secrets_key, created), positions)

    def _sealed(self, endpoint: Endpoint) -> WebhookEndpointCreated:
        """The endpoint as snapshots keep it: sealed, even one journaled before secrets were
        (its journal frames keep the secret as written; recreating the endpoint drops it)."""
        if endpoint.created.sealed_secret is not None:
            return endpoint.created
        sealed = seal_secret(self._secrets_key, endpoint.created.endpoint_id, endpoint.secret)
        return msgspec.structs.replace(endpoint.created, secret="", sealed_secret=sealed)

    def maybe_snapshot(self) -> None:
        """Every `snapshot_every_records`, one at a time."""
        if self.journal.last_seq - self._snapshot_seq < self._snapshot_every:
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
