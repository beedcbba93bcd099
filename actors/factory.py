"""The one place that turns the plain actor classes into Ray actors.

Named and detached in the ledger's namespace so that the gateway (and a restarted
gateway) finds them by name; `max_restarts=-1` so Ray restarts a dead actor, whose
`__init__` replays its journal; `max_task_retries=-1` so calls in flight are delivered
again to the new incarnation (which is why every method is idempotent). A hundredth of a
CPU each: the actors are I/O-bound and must all fit on a 2-core machine, yet not zero,
because Ray ignores a soft node affinity for work that requests no resources at all
(ray-project/ray#25360) and would place shards on random nodes.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import time
from collections.abc import Iterator
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.coordinator import PaymentCoordinator
from actors.registry import Registry
from actors.settings import Settings
from actors.shard import BalanceShard
from actors.topology import REGISTRY_NAME, WEBHOOKS_NAME, coordinator_name, partitions_of_shard, shard_name
from actors.webhooks import WebhookDispatcher

MAX_CONCURRENCY = 10_000  # calls an async actor interleaves; shards batch, so few are live


def _spread_over_nodes() -> Iterator[NodeAffinitySchedulingStrategy | str]:
    """Round robin over the nodes alive now that take work (a head started with no CPUs
    does not), so shards land on different nodes (Ray's SPREAD is best effort and was seen
    placing every shard on one node). Soft: an actor whose node is lost restarts on
    another one. No such node yet (an autoscaler will add them): Ray's default placement."""
    alive = [n for n in ray.nodes() if n["Alive"]]  # type: ignore[no-untyped-call]
    nodes = sorted(n["NodeID"] for n in alive if n["Resources"].get("CPU", 0) > 0)
    for k in itertools.count():
        yield NodeAffinitySchedulingStrategy(nodes[k % len(nodes)], soft=True) if nodes else "DEFAULT"


def ray_shell(cls: type) -> type:
    """A class of the same name whose public methods forward to a `cls` it holds. Ray wraps
    every method of an actor class for tracing (a wrapper call, and for coroutines an extra
    coroutine, even with tracing off), private helpers included: on a coordinator that was
    ~7% of its CPU, spent on `_commit`, `_shard` and their like. The shell keeps that cost
    to the one call Ray delivers. A `cls` made of parts names them in `PARTS` (attribute:
    class): the shell forwards each part's public methods to that part."""

    def init(self: Any, *args: Any) -> None:
        self._core = cls(*args)

    def forward(part: str | None, name: str, method: Any) -> Any:
        def target(self: Any) -> Any:
            return self._core if part is None else getattr(self._core, part)

        if inspect.iscoroutinefunction(method):

            async def call_async(self: Any, *args: Any, **kwargs: Any) -> Any:
                return await getattr(target(self), name)(*args, **kwargs)

            return functools.wraps(method)(call_async)

        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            return getattr(target(self), name)(*args, **kwargs)

        return functools.wraps(method)(call)

    methods: dict[str, Any] = {}
    for part, part_cls in [(None, cls), *getattr(cls, "PARTS", {}).items()]:
        for name, method in inspect.getmembers(part_cls, inspect.isfunction):
            if not name.startswith("_"):
                assert name not in methods, f"{cls.__name__}: two parts answer {name}"
                methods[name] = forward(part, name, method)

    def describe(self: Any) -> str:  # Ray prefixes the actor's forwarded log lines with it
        core = getattr(self, "_core", None)  # absent if __init__ failed
        return cls.__name__ if core is None else repr(core)

    return type(cls.__name__, (), {"__init__": init, "__repr__": describe, **methods})


def _remote(cls: type, name: str, settings: Settings, where: NodeAffinitySchedulingStrategy | str, *args: Any) -> Any:
    options = {
        "name": name,
        "namespace": settings.namespace,
        "lifetime": "detached",
        "max_restarts": -1,
        "max_task_retries": -1,
        "num_cpus": 0.01,
        "max_concurrency": MAX_CONCURRENCY,
        "get_if_exists": True,
        "scheduling_strategy": where,
    }
    return ray.remote(ray_shell(cls)).options(**options).remote(settings, *args)


class Handles:
    def __init__(
        self, namespace: str, registry: Any, shards: list[Any], coordinators: list[Any], webhooks: Any
    ) -> None:
        self.namespace = namespace
        self.registry = registry
        self.shards = shards
        self.coordinators = coordinators
        self.webhooks = webhooks

    def all(self) -> list[Any]:
        return [self.registry, *self.shards, *self.coordinators, self.webhooks]


class PartitionCountMismatch(Exception):
    pass


class LayoutMismatch(Exception):
    """Actors of another layout are running: serving beside them would give a partition
    two writers."""


def running_actors(namespace: str) -> set[str]:
    """Names of the ledger's actors alive (or restarting) in its namespace."""
    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == namespace}


def _check_layout(settings: Settings) -> None:
    running = running_actors(settings.namespace) - {REGISTRY_NAME, WEBHOOKS_NAME}
    wanted = {shard_name(k) for k in range(settings.shards)} | {
        coordinator_name(k) for k in range(settings.coordinators)
    }
    if running and running != wanted:
        raise LayoutMismatch(
            f"this ledger is running with {', '.join(sorted(running))} in namespace {settings.namespace!r}; "
            f"stop it first (rayledger stop --address ...) to serve it with {settings.shards} shards and "
            f"{settings.coordinators} coordinators"
        )


def start_actors(settings: Settings, coordinator_class: type = PaymentCoordinator) -> Handles:
    """Create (or find) every actor and wait until all have recovered. `rayledger serve`
    passes the coordinator composed with its HTTP ingress (gateway.ingress); tests drive
    plain coordinators through Ray."""
    nodes = _spread_over_nodes()
    registry = _remote(Registry, REGISTRY_NAME, settings, next(nodes))
    stored = ray.get(registry.genesis.remote(settings.partitions))
    if stored != settings.partitions:
        raise PartitionCountMismatch(
            f"this ledger was created with {stored} partitions; it cannot be served with "
            f"{settings.partitions} (partitions are fixed at creation; change --shards instead)"
        )
    _check_layout(settings)
    shards = [_remote(BalanceShard, shard_name(k), settings, next(nodes), k) for k in range(settings.shards)]
    ingress_nodes = _spread_over_nodes()  # coordinator k on node k: an ingress per node
    coordinators = [
        _remote(coordinator_class, coordinator_name(k), settings, next(ingress_nodes), k)
        for k in range(settings.coordinators)
    ]
    webhooks = _remote(WebhookDispatcher, WEBHOOKS_NAME, settings, "DEFAULT")
    handles = Handles(settings.namespace, registry, shards, coordinators, webhooks)
    for k, stats in enumerate(ray.get([s.stats.remote() for s in shards])):
        owned = partitions_of_shard(k, settings.partitions, settings.shards)
        if stats["partitions"] != sorted(owned):  # a shard left from a start with another layout
            raise LayoutMismatch(f"{shard_name(k)} owns partitions {stats['partitions']}, not {sorted(owned)}")
    ray.get([registry.ready.remote(), *[c.ready.remote() for c in coordinators]])
    ray.get(webhooks.ready.remote())  # it reads the others' journals
    return handles


def kill_actors(handles: Handles) -> None:
    """Stop this ledger's actors for good (tests, clean shutdown of a shared cluster)."""
    for handle in handles.all():
        ray.kill(handle, no_restart=True)
    _await_gone(handles.namespace)


def stop_ledger(namespace: str) -> list[str]:
    """Stop every actor of the ledger in `namespace` for good, as a crash would (every
    acknowledged operation is already durable); returns their names. The next start
    recovers them from their journals, with any layout."""
    names = sorted(running_actors(namespace))
    for name in names:
        ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
    _await_gone(namespace)
    return names


def _await_gone(namespace: str, timeout_s: float = 30.0) -> None:
    """`ray.kill` returns before the names are released; a start right after must not
    find them (it would take them for a running ledger)."""
    deadline = time.monotonic() + timeout_s
    while running_actors(namespace):
        assert time.monotonic() < deadline, f"actors of {namespace!r} still listed {timeout_s} s after being killed"
        time.sleep(0.05)
