"""The whole ledger as plain objects on one event loop, without Ray: the same actor
classes and journals, peers resolved locally. Deterministic tests use it (with memory
journals they can crash), and benchmarks use it to build large journals quickly and to
measure the engine without Ray's per-call cost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actors.client import LedgerClient
from actors.clock import Clock, now_ms
from actors.coordinator import PaymentCoordinator
from actors.peers import Peer
from actors.registry import Registry
from actors.settings import Settings
from actors.shard import BalanceShard
from actors.topology import (
    REGISTRY_NAME,
    WEBHOOKS_NAME,
    coordinator_index,
    coordinator_name,
    is_shard_name,
    partitions_of_shard,
    shard_index,
    shard_name,
)
from actors.webhooks import WebhookDispatcher
from journal import Journal


class InProcessLedger:
    def __init__(self, data_dir: Path, *, clock: Clock = now_ms, **overrides: Any) -> None:
        # Delivery's lower CPU priority would apply to the whole (test) process here.
        defaults = {"partitions": 4, "shards": 2, "webhook_idle_priority": False}
        self.settings = Settings(data_dir=str(data_dir), **{**defaults, **overrides})
        self.clock = clock  # the coordinators' (a test may move it)
        self.objects: dict[str, Any] = {}
        self.client = LedgerClient(self.settings, self.peer)

    def journal(self, name: str) -> Journal | None:
        """The journal for `name` ("registry", "p-<k>", "c-<k>", "webhooks"); None: the actor's own
        SQLite file under the data directory."""
        return None

    def peer(self, name: str) -> Peer:
        return Peer(self.objects[name])

    def names(self) -> list[str]:
        s = self.settings
        coordinators = [coordinator_name(c) for c in range(s.coordinators)]
        return [REGISTRY_NAME, *(shard_name(k) for k in range(s.shards)), *coordinators, WEBHOOKS_NAME]

    def build(self, name: str) -> Any:
        """The actor `name` as a (re)start builds it: from its journal."""
        s = self.settings
        if name == REGISTRY_NAME:
            return Registry(s, self.peer, self.journal("registry"))
        if name == WEBHOOKS_NAME:
            return WebhookDispatcher(s, self.peer, self.journal("webhooks"))
        if is_shard_name(name):
            k = shard_index(name)
            journals = {p: self.journal(f"p-{p}") for p in partitions_of_shard(k, s.partitions, s.shards)}
            if all(j is None for j in journals.values()):
                return BalanceShard(s, k)
            return BalanceShard(s, k, journals)  # type: ignore[arg-type]
        c = coordinator_index(name)
        return PaymentCoordinator(s, c, self.peer, self.journal(f"c-{c}"), self.clock)

    async def start(self) -> InProcessLedger:
        """Build every actor from its journal, as a (re)start would."""
        self.objects = {}
        for name in self.names():
            self.objects[name] = self.build(name)
        await self.objects[REGISTRY_NAME].genesis(self.settings.partitions)
        await self.client.status()
        await self.objects[WEBHOOKS_NAME].ready()
        return self

    def journals(self) -> list[Journal]:
        """Every journal of every actor, open now."""
        return [journal for obj in self.objects.values() for journal in journals_of(obj)]

    @property
    def webhooks(self) -> WebhookDispatcher:
        return self.objects[WEBHOOKS_NAME]  # type: ignore[no-any-return]

    def coordinator(self, index: int = 0) -> PaymentCoordinator:
        return self.objects[coordinator_name(index)]  # type: ignore[no-any-return]

    async def stop(self) -> None:
        # Coordinators first: closing, they send the phase two they still owe the shards.
        for obj in sorted(self.objects.values(), key=lambda o: not isinstance(o, PaymentCoordinator)):
            await obj.close()  # a coordinator's close stops its sweep of expired holds
        self.objects = {}


def journals_of(actor: Any) -> list[Journal]:
    if isinstance(actor, BalanceShard):
        return [p.journal for p in actor.partitions.values()]
    return [actor.journal]


def abandon(actor: Any) -> None:
    """Stop `actor` as its process's death would (crash simulations): its journals write
    nothing more, its timers and background work stop, phase two it owes stays owed."""
    for journal in journals_of(actor):
        journal.abandon()
    if isinstance(actor, PaymentCoordinator):
        actor.recovery.abandon()
        actor.holds.stop_sweeping()
        actor.phase_two.close()
    elif isinstance(actor, WebhookDispatcher):
        actor.abandon()
