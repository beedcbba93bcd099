"""Who owns what: balance -> partition -> shard, payment -> coordinator.

crc32, not Python's `hash()`, because the mapping must be identical in every process and
across restarts. Partitions move between shards when the shard count changes; a balance
never changes partition.
"""

from __future__ import annotations

import zlib


def partition_of(balance_id: str, partitions: int) -> int:
    return zlib.crc32(balance_id.encode()) % partitions


def shard_of_partition(partition: int, shards: int) -> int:
    return partition % shards


def partitions_of_shard(shard: int, partitions: int, shards: int) -> list[int]:
    return [p for p in range(partitions) if shard_of_partition(p, shards) == shard]


def coordinator_of(payment_id: str, coordinators: int) -> int:
    return zlib.crc32(payment_id.encode()) % coordinators


def shard_name(index: int) -> str:
    return f"shard-{index}"


def is_shard_name(name: str) -> bool:
    return name.startswith("shard-")


def shard_index(name: str) -> int:
    assert is_shard_name(name), name
    return int(name.removeprefix("shard-"))


def coordinator_name(index: int) -> str:
    return f"coordinator-{index}"


def coordinator_index(name: str) -> int:
    assert name.startswith("coordinator-"), name
    return int(name.removeprefix("coordinator-"))


REGISTRY_NAME = "registry"
WEBHOOKS_NAME = "webhooks"
