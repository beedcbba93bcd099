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
from actors.topology import REGISTRY_NAME, coordinator_name, partitions_of_shard, shard_name
from journal import Journal, MemoryJournal, MemoryStore


class LocalLedger:
    """`memory=True`: journals in MemoryStores (kept in `stores` across restarts), so a test
    can fail or crash them; otherwise real SQLite files under `data_dir`."""

    def __init__(self, data_dir: Path, *, memory: bool = False, **overrides: Any) -> None:
        self.settings = Settings(data_dir=str(data_dir), **{"partitions": 4, "shards": 2, **overrides})
        self.objects: dict[str, Any] = {}
        self.client = LedgerClient(self.settings, self.peer)
        self.stores: dict[str, MemoryStore] | None = {} if memory else None

    def _journal(self, name: str) -> MemoryJournal | None:
        if self.stores is None:
            return None
        store = self.stores.setdefault(name, MemoryStore())
        return MemoryJournal(store)

    def peer(self, name: str) -> Peer:
        return Peer(self.objects[name])

    async def start(self) -> LocalLedger:
        """Build every actor from its journal, as a (re)start would."""
        s = self.settings
        self.objects = {REGISTRY_NAME: Registry(s, self.peer, self._journal("registry"))}
        for k in range(s.shards):
            journals = None
            if self.stores is not None:
                owned = partitions_of_shard(k, s.partitions, s.shards)
                journals = {p: self._journal(f"p-{p}") for p in owned}
            self.objects[shard_name(k)] = BalanceShard(s, k, journals)  # type: ignore[arg-type]
        for c in range(s.coordinators):
            self.objects[coordinator_name(c)] = PaymentCoordinator(s, c, self.peer, self._journal(f"c-{c}"))
        await self.objects[REGISTRY_NAME].genesis(s.partitions)
        await self.client.status()
        return self

    def coordinator(self, index: int = 0) -> PaymentCoordinator:
        return self.objects[coordinator_name(index)]  # type: ignore[no-any-return]

    def crash(self) -> None:
        """Every process dies at once: unflushed records are lost, tasks are abandoned.
        The next `start()` sees only what the stores hold."""
        assert self.stores is not None, "crashes are simulated on memory journals"
        for obj in self.objects.values():
            for journal in _journals_of(obj):
                if journal._flusher is not None:
                    journal._flusher.cancel()
            if isinstance(obj, PaymentCoordinator):
                for task in (obj._sweeper, obj._recovery):
                    if task is not None:
                        task.cancel()
        self.stores = {name: store.survivor() for name, store in self.stores.items()}
        self.objects = {}

    async def stop(self) -> None:
        for obj in self.objects.values():
            if isinstance(obj, PaymentCoordinator) and obj._sweeper is not None:
                obj._sweeper.cancel()
            await obj.close()
        self.objects = {}


def _journals_of(obj: Any) -> list[Journal]:
    if isinstance(obj, BalanceShard):
        return [p.journal for p in obj.partitions.values()]
    return [obj.journal]
