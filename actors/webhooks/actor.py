"""The WebhookDispatcher actor: it builds the webhooks' parts (their journaled state, the
endpoints the API manages, their delivery), each given only what it needs, and answers
each remote call by handing it to the part that owns it. Its public methods are its
remote API (`actors.factory.ray_shell` forwards them); helpers live on the parts."""

from __future__ import annotations

import logging
import time

from actors.client import LedgerClient
from actors.logs import event
from actors.memory import freeze_long_lived_state
from actors.peers import PeerLookup, ray_lookup
from actors.settings import Settings
from actors.telemetry import Telemetry, placement
from actors.topology import WEBHOOKS_NAME
from actors.webhooks.addresses import private_targets_allowed
from actors.webhooks.delivery import Delivery, idle_priority
from actors.webhooks.endpoints import EndpointMade, Endpoints
from actors.webhooks.signing_secrets import secrets_key
from actors.webhooks.state import WebhookState
from journal import Journal, SqliteJournal
from ledger.records import DeliveryAttempted, WebhookEndpointCreated
from ledger.views import Idem

log = logging.getLogger("rayledger.webhooks")


def webhooks_journal_path(settings: Settings) -> str:
    return str(settings.data_path / "webhooks.sqlite")


class WebhookDispatcher:
    def __init__(self, settings: Settings, peers: PeerLookup | None = None, journal: Journal | None = None) -> None:
        if settings.webhook_idle_priority:
            idle_priority()
        self.settings = settings
        self.journal = journal or SqliteJournal(
            webhooks_journal_path(settings),
            busy_timeout_ms=settings.journal_busy_timeout_ms,
            commit_on_loop=settings.journal_commit_on_loop,
        )
        key = secrets_key(settings)
        private_allowed = private_targets_allowed(settings)
        # The ledger as the gateway sees it: where events are read and how they are rendered.
        client = LedgerClient(settings, peers or ray_lookup(settings.namespace))
        started = time.perf_counter()
        self.state = WebhookState(self.journal, key, settings.snapshot_every_records)
        replayed = self.state.load()
        self.delivery = Delivery(settings, self.state, client, private_allowed)
        self.endpoints = Endpoints(
            self.state, self.delivery, client, key, private_allowed, settings.idempotency_window_s
        )
        self.telemetry = Telemetry(settings.namespace, WEBHOOKS_NAME)
        self.telemetry.watch(self.journal, "webhooks")
        freeze_long_lived_state()
        event(
            log,
            "recovered",
            actor=WEBHOOKS_NAME,
            endpoints=len(self.state.endpoints),
            retrying=self.state.retrying(),
            records_replayed=replayed,
            seconds=round(time.perf_counter() - started, 3),
            **placement(),
        )

    def __repr__(self) -> str:
        return WEBHOOKS_NAME

    # -- lifecycle ------------------------------------------------------------------------
    async def ready(self) -> bool:
        """Start delivering (once): the ledger's other actors are up by now."""
        self.delivery.open()
        return True

    def abandon(self) -> None:
        """Stop delivering at once, journaling nothing more (a simulated crash)."""
        self.delivery.abandon()

    async def close(self) -> None:
        await self.delivery.close()
        await self.journal.close()

    # -- endpoints ------------------------------------------------------------------------
    async def create_endpoint(
        self, url: str, events: list[str], description: str | None, idem: Idem | None = None
    ) -> EndpointMade:
        """The endpoint made (or the one `idem` made before), or why not."""
        await self.ready()
        return await self.endpoints.create(url, events, description, idem)

    async def get_endpoint(self, endpoint_id: str) -> tuple[WebhookEndpointCreated, int] | None:
        """The endpoint and how many events wait for a retry."""
        return self.endpoints.get(endpoint_id)

    async def list_endpoints(self) -> list[tuple[WebhookEndpointCreated, int]]:
        return self.endpoints.listed()

    async def delete_endpoint(self, endpoint_id: str) -> bool:
        return await self.endpoints.delete(endpoint_id)

    async def deliveries(
        self, endpoint_id: str, limit: int, before_id: str | None, after_id: str | None, ascending: bool
    ) -> list[DeliveryAttempted] | None:
        """The endpoint's delivery log (every attempt), newest first; None if no such endpoint."""
        return await self.endpoints.deliveries(endpoint_id, limit, before_id, after_id, ascending)
