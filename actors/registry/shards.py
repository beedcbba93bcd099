"""The shards as the registry sees them: which one owns a balance, and its peer. The
registry tells shards of balances opened, accounts disabled and balances changed; names
resolve lazily, as under Ray the shards start after the registry."""

from __future__ import annotations

from actors.peers import Peer, PeerLookup, ray_lookup
from actors.settings import Settings
from actors.topology import partition_of, shard_name, shard_of_partition


class ShardPeers:
    def __init__(self, settings: Settings, peers: PeerLookup | None) -> None:
        self._settings = settings
        self._peers = peers

    def index_of(self, balance_id: str) -> int:
        return shard_of_partition(partition_of(balance_id, self._settings.partitions), self._settings.shards)

    def at(self, index: int) -> Peer:
        if self._peers is None:
            self._peers = ray_lookup(self._settings.namespace)
        return self._peers(shard_name(index))

    def of(self, balance_id: str) -> Peer:
        return self.at(self.index_of(balance_id))
