"""Endpoints as the API manages them (API "Webhooks"): made (idempotently, its URL checked,
its signing secret made and sealed), read, listed and deleted, and each one's delivery
log. A new endpoint gets the events after the journals' positions at its creation."""

from __future__ import annotations

import asyncio
import os

import msgspec

from actors.client import LedgerClient
from actors.clock import now_ms, random_bytes
from actors.webhooks.addresses import url_refusal
from actors.webhooks.delivery import Delivery
from actors.webhooks.signing_secrets import seal_secret
from actors.webhooks.state import ALL_EVENTS, WebhookState
from ledger.ids import make_id
from ledger.records import EVENT_TYPES, DeliveryAttempted, WebhookEndpointCreated, WebhookEndpointDeleted
from ledger.views import Idem


class EndpointMade(msgspec.Struct, frozen=True):
    """An endpoint made (`replayed`: by an earlier call with the same Idempotency-Key), or
    `refusal`: "idempotency_key_reused", or why its URL is refused."""

    created: WebhookEndpointCreated | None = None
    refusal: str | None = None
    replayed: bool = False
    secret: str | None = None  # the signing secret, for the creator's answer alone


class Endpoints:
    def __init__(
        self,
        state: WebhookState,
        delivery: Delivery,
        client: LedgerClient,
        secrets_key: bytes,
        private_allowed: bool,
        idempotency_window_s: int,
    ) -> None:
        self._state = state
        self._delivery = delivery
        self._client = client
        self._secrets_key = secrets_key
        self._private_allowed = private_allowed
        self._window_ms = idempotency_window_s * 1000
        self._creating = asyncio.Lock()  # two calls with one Idempotency-Key make one endpoint

    async def create(self, url: str, events: list[str], description: str | None, idem: Idem | None) -> EndpointMade:
        async with self._creating:
            return await self._create(url, events, description, idem)

    async def _create(self, url: str, events: list[str], description: str | None, idem: Idem | None) -> EndpointMade:
        if idem is not None:
            window_start_ms = now_ms() - self._window_ms
            for e in self._state.endpoints.values():
                if e.created.idem_lookup == idem.lookup and e.created.created_at_ms >= window_start_ms:
                    if e.created.idem_fingerprint != idem.fingerprint:
                        return EndpointMade(refusal="idempotency_key_reused")
                    return EndpointMade(e.created, replayed=True, secret=e.secret)
        refused = await url_refusal(url, self._private_allowed)
        if refused is not None:
            return EndpointMade(refusal=refused)
        assert all(e == ALL_EVENTS or e in EVENT_TYPES for e in events), events
        positions = await self._client.event_positions()
        now = now_ms()
        endpoint_id = make_id("we", now, random_bytes(10))
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
        self._state.commit(created)
        await self._state.journal.durable()
        self._delivery.start(self._state.endpoints[created.endpoint_id])
        return EndpointMade(created, secret=secret)

    def get(self, endpoint_id: str) -> tuple[WebhookEndpointCreated, int] | None:
        endpoint = self._state.endpoints.get(endpoint_id)
        return None if endpoint is None else (endpoint.created, len(endpoint.retrying))

    def listed(self) -> list[tuple[WebhookEndpointCreated, int]]:
        found = sorted(self._state.endpoints.values(), key=lambda e: e.created.endpoint_id)
        return [(e.created, len(e.retrying)) for e in found]

    async def delete(self, endpoint_id: str) -> bool:
        endpoint = self._state.endpoints.get(endpoint_id)
        if endpoint is None:
            return False
        self._delivery.stop(endpoint)
        self._state.commit(WebhookEndpointDeleted(endpoint_id, now_ms()))
        await self._state.journal.durable()
        return True

    async def deliveries(
        self, endpoint_id: str, limit: int, before_id: str | None, after_id: str | None, ascending: bool
    ) -> list[DeliveryAttempted] | None:
        if endpoint_id not in self._state.endpoints:
            return None
        await self._state.journal.durable()
        found = await self._state.journal.tagged(
            f"wd:{endpoint_id}", limit=limit, before_id=before_id, after_id=after_id, ascending=ascending
        )
        return [s.record for s in found]  # type: ignore[misc]
