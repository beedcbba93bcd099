"""The one place that turns the plain actor classes into Ray actors.

Named and detached in the ledger's namespace so that the gateway (and a restarted
gateway) finds them by name; `max_restarts=-1` so Ray restarts a dead actor, whose
`__init__` replays its journal; `max_task_retries=-1` so calls in flight are delivered
again to the new incarnation (which is why every method is idempotent). `num_cpus=0`:
the actors are I/O-bound and must all fit on a 2-core machine.
"""

from __future__ import annotations

from typing import Any

import ray

from actors.coordinator import PaymentCoordinator
from actors.registry import Registry
from actors.settings import Settings
from actors.shard import BalanceShard
from actors.topology import REGISTRY_NAME, coordinator_name, shard_name

MAX_CONCURRENCY = 10_000  # calls an async actor interleaves; shards batch, so few are live


def _remote(cls: type, name: str, settings: Settings, *args: Any) -> Any:
    options = {
        "name": name,
        "namespace": settings.namespace,
        "lifetime": "detached",
        "max_restarts": -1,
        "max_task_retries": -1,
        "num_cpus": 0,
        "max_concurrency": MAX_CONCURRENCY,
        "get_if_exists": True,
        "scheduling_strategy": "SPREAD",  # shards land on different nodes when there are several
    }
    return ray.remote(cls).options(**options).remote(settings, *args)


class Handles:
    def __init__(self, registry: Any, shards: list[Any], coordinators: list[Any]) -> None:
        self.registry = registry
        self.shards = shards
        self.coordinators = coordinators

    def all(self) -> list[Any]:
        return [self.registry, *self.shards, *self.coordinators]


class PartitionCountMismatch(Exception):
    pass


def start_actors(settings: Settings) -> Handles:
    """Create (or find) every actor and wait until all have recovered."""
    registry = _remote(Registry, REGISTRY_NAME, settings)
    stored = ray.get(registry.genesis.remote(settings.partitions))
    if stored != settings.partitions:
        raise PartitionCountMismatch(
            f"this ledger was created with {stored} partitions; it cannot be served with "
            f"{settings.partitions} (partitions are fixed at creation; change --shards instead)"
        )
    shards = [_remote(BalanceShard, shard_name(k), settings, k) for k in range(settings.shards)]
    coordinators = [_remote(PaymentCoordinator, coordinator_name(k), settings, k) for k in range(settings.coordinators)]
    handles = Handles(registry, shards, coordinators)
    ray.get([s.stats.remote() for s in shards])
    ray.get([registry.ready.remote(), *[c.ready.remote() for c in coordinators]])
    return handles


def kill_actors(handles: Handles) -> None:
    """Stop this ledger's actors for good (tests, clean shutdown of a shared cluster)."""
    for handle in handles.all():
        ray.kill(handle, no_restart=True)
