"""The whole ledger as plain objects on one event loop (no Ray): the same actor classes,
journals on real SQLite files, peers resolved locally. For deterministic scenarios."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actors.client import LedgerClient
from actors.coordinator import PaymentCoordinator
from actors.peers import Peer
from actors.registry import Registry
from actors.settings import Settings
from actors.shard import BalanceShard
from actors.topology import REGISTRY_NAME, coordinator_name, shard_name


class LocalLedger:
    def __init__(self, data_dir: Path, **overrides: Any) -> None:
        self.settings = Settings(data_dir=str(data_dir), **{"partitions": 4, "shards": 2, **overrides})
        self.objects: dict[str, Any] = {}
        self.client = LedgerClient(self.settings, self.peer)

    def peer(self, name: str) -> Peer:
        return Peer(self.objects[name])

    async def start(self) -> LocalLedger:
        """Build every actor from its journal, as a (re)start would."""
        s = self.settings
        self.objects = {REGISTRY_NAME: Registry(s, self.peer)}
        for k in range(s.shards):
            self.objects[shard_name(k)] = BalanceShard(s, k)
        for c in range(s.coordinators):
            self.objects[coordinator_name(c)] = PaymentCoordinator(s, c, self.peer)
        await self.objects[REGISTRY_NAME].genesis(s.partitions)
        await self.client.status()
        return self

    def coordinator(self, index: int = 0) -> PaymentCoordinator:
        return self.objects[coordinator_name(index)]  # type: ignore[no-any-return]

    async def stop(self) -> None:
        for obj in self.objects.values():
            if isinstance(obj, PaymentCoordinator) and obj._sweeper is not None:
                obj._sweeper.cancel()
            await obj.close()
        self.objects = {}
