"""The real actor classes as simulated processes, and the calls between them as Ray delivers
them (docs: Ray's actor fault tolerance; actors.factory sets max_restarts=-1 and
max_task_retries=-1).

Each actor runs as an `Incarnation`. Every task it starts, directly or not, carries it (a
context variable, inherited by tasks as asyncio copies contexts), so a crash ends exactly
that process's tasks: its calls in progress, its journal's flusher, its timers' work. Its
stores keep what they had synced (tests/sim/disk.py), and a restart builds the actor again
from them, as Ray reruns `__init__` (InProcessLedger.build).

A call is a message with a life of its own: sent, it travels for a seeded delay and is
delivered even if its sender dies meanwhile (a dead sender only misses the answer). No order
holds between calls (each travels alone; an async actor runs them concurrently). Delivered to
an actor that dies before answering, it is delivered again to the next incarnation, as Ray
retries it, unless its sender is dead too (the owner of a Ray call retries it). Some
answers are lost on the way back and the call is delivered again: at least once, the
caller gets the second answer.

A request from a client runs in a coordinator's process, where the ingress is, and dies
with it; while no coordinator is up, in one more incarnation (`gateway`), which dies only
with the whole cluster (`crash_all`).
"""

from __future__ import annotations

import asyncio
import contextvars
import random
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from actors.client import LedgerClient
from actors.inprocess import InProcessLedger, abandon
from actors.peers import Peer
from actors.registry import Registry
from actors.topology import (
    REGISTRY_NAME,
    WEBHOOKS_NAME,
    coordinator_index,
    is_shard_name,
    partitions_of_shard,
    shard_name,
    shard_of_partition,
)
from actors.topology import shard_index as index_of_shard
from journal.memory import SimulatedCrash
from ledger.book import BalanceBook
from tests.sim.disk import SimJournal, SimStore
from tests.sim.loop import SimulatedLoop
from tests.sim.trace import Trace

T = TypeVar("T")
GATEWAY = "gateway"
NETWORK = "network"


class Incarnation:
    def __init__(self, name: str, number: int, loop: asyncio.AbstractEventLoop) -> None:
        self.name = name
        self.number = number
        self.obj: Any = None
        self.alive = True
        self.died: asyncio.Future[None] = loop.create_future()
        self.tasks: dict[asyncio.Task[Any], None] = {}  # in order: a set orders by address

    def __repr__(self) -> str:
        return f"{self.name}#{self.number}"


CURRENT: contextvars.ContextVar[Incarnation] = contextvars.ContextVar("incarnation")


class Faults:
    """How the network misbehaves; the fault scheduler changes these during a run."""

    def __init__(self) -> None:
        self.delay_s_max = 0.004
        self.slow_p = 0.0  # a message delayed long (a slow link, a phase two held back)
        self.slow_s_max = 0.3
        self.lose_answer_p = 0.0  # an answer lost: the call is delivered again


class SimCluster(InProcessLedger):
    def __init__(self, data_dir: Path, loop: SimulatedLoop, rng: random.Random, trace: Trace, **overrides: Any) -> None:
        super().__init__(data_dir, clock=loop.now_ms, **overrides)
        self.loop = loop
        self.rng = rng
        self.trace = trace
        self.faults = Faults()
        self.fsync_s_max = 0.002
        self.stores: dict[str, SimStore] = {}
        self.live: dict[str, Incarnation] = {}
        self.up: dict[str, asyncio.Event] = {}  # set while the actor is alive
        self.restarts: dict[str, int] = {}
        self.serving = asyncio.Event()  # clear while the whole cluster restarts
        self.network = Incarnation(NETWORK, 0, loop)
        self.gateway = Incarnation(GATEWAY, 0, loop)
        loop.set_task_factory(self._task_factory)  # type: ignore[arg-type]

    # -- processes --------------------------------------------------------------------------
    def _task_factory(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, Any],
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, context=context)
        owner = CURRENT.get(None) if context is None else context.get(CURRENT)  # whose process starts it
        if owner is not None:
            owner.tasks[task] = None
            task.add_done_callback(lambda t: owner.tasks.pop(t, None))
        return task

    def spawn(self, owner: Incarnation, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        context = contextvars.copy_context()
        context.run(CURRENT.set, owner)
        return self.loop.create_task(coro, context=context)

    def journal(self, name: str) -> SimJournal:
        store = self.stores.get(name)
        if store is None:
            store = self.stores[name] = SimStore(self.rng, self.fsync_s_max)
        return SimJournal(store, batch_rows_max=self.settings.journal_batch_rows_max)

    def store_names(self, name: str) -> list[str]:
        if name == REGISTRY_NAME:
            return ["registry"]
        if name == WEBHOOKS_NAME:
            return ["webhooks"]
        if is_shard_name(name):
            s = self.settings
            return [f"p-{p}" for p in partitions_of_shard(index_of_shard(name), s.partitions, s.shards)]
        return [f"c-{coordinator_index(name)}"]

    def peer(self, name: str) -> Peer:
        return SimPeer(name, self)

    def launch(self, name: str) -> Incarnation:
        """Start (or restart) the actor `name` from its stores."""
        number = self.restarts.get(name, -1) + 1
        self.restarts[name] = number
        inc = Incarnation(name, number, self.loop)
        token = CURRENT.set(inc)
        try:
            inc.obj = self.build(name)
        finally:
            CURRENT.reset(token)
        self.live[name] = inc
        self.objects[name] = inc.obj
        self.up.setdefault(name, asyncio.Event()).set()
        self.trace.add(f"start {inc}")
        return inc

    async def start(self) -> SimCluster:
        self.objects = {}
        for name in self.names():
            self.launch(name)
        await self.ingress(self.peer(REGISTRY_NAME).invoke(Registry.genesis, self.settings.partitions))
        await self.ingress(self.client.status())
        # Webhook delivery is not started: it moves no money, opens HTTP sessions, and has
        # its own tests (tests/e2e/test_webhooks.py).
        self.serving.set()
        return self

    def down(self) -> list[str]:
        """The actors not running now."""
        return [name for name in self.names() if name not in self.live]

    def book_of(self, partition: int) -> BalanceBook:
        """The live book of a partition (its shard must be up)."""
        s = self.settings
        return self.objects[shard_name(shard_of_partition(partition, s.shards))].partitions[partition].book  # type: ignore[no-any-return]

    async def serve(self, make: Callable[[LedgerClient], Awaitable[T]]) -> T:
        """A request's work, once the cluster serves (not while all of it restarts)."""
        await self.serving.wait()
        return await make(self.client)

    def crash(self, name: str) -> None:
        """The process of `name` dies: its tasks end where they are, its unsynced writes
        may be lost; Ray will restart it (`launch`)."""
        inc = self.live.pop(name)
        self.trace.add(f"crash {inc}")
        self._kill(inc)
        for store_name in self.store_names(name):
            self.stores[store_name] = self.stores[store_name].survivor_of_crash()
        del self.objects[name]
        self.up[name].clear()

    def _kill(self, inc: Incarnation) -> None:
        inc.alive = False
        if not inc.died.done():
            inc.died.set_result(None)
        if inc.obj is not None:
            abandon(inc.obj)
        for task in list(inc.tasks):
            task.cancel()

    def crash_all(self) -> None:
        """Every process dies at once, the ingress and every call in flight with them."""
        self.trace.add("crash all")
        self.serving.clear()
        for name in list(self.live):
            self.crash(name)
        for inc in (self.gateway, self.network):
            self._kill(inc)
        self.gateway = Incarnation(GATEWAY, self.gateway.number + 1, self.loop)
        self.network = Incarnation(NETWORK, self.network.number + 1, self.loop)

    def halt(self) -> None:
        """The run is over: every process stops as a crash would stop it (nothing more is
        journaled or sent, no task starts another), so that its tasks can be ended."""
        for inc in (*self.live.values(), self.gateway, self.network):
            self._kill(inc)

    async def start_all(self, **layout: Any) -> None:
        """Start every actor again, maybe in another layout (partitions move between shards)."""
        self.settings = msgspec.structs.replace(self.settings, **layout)
        self.client = type(self.client)(self.settings, self.peer)
        self.up = {}
        self.trace.add(f"start all {layout}")
        await self.start()

    def ingress(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `coro` (a request's work: calls through LedgerClient or `peer`, never an
        actor's method called directly, whose tasks would belong to the caller's process
        and die with it) in an ingress's process: the
        ingress runs inside each coordinator's actor, so a request dies with the coordinator
        that took it (its client retries, with its key, while the calls it sent still
        travel); one outside them (`gateway`) serves while none is up."""
        ingresses = [inc for name, inc in self.live.items() if name.startswith("coordinator-")]
        return self.spawn(self.rng.choice(ingresses) if ingresses else self.gateway, coro)

    # -- messages ---------------------------------------------------------------------------
    def _delay(self) -> float:
        f = self.faults
        if f.slow_p and self.rng.random() < f.slow_p:
            return self.rng.uniform(0, f.slow_s_max)
        return self.rng.uniform(0, f.delay_s_max)

    async def send(self, name: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        sender = CURRENT.get()
        if not sender.alive:
            raise SimulatedCrash(f"{sender} is gone")
        message = self.spawn(self.network, self._carry(sender, name, method, args, kwargs))
        message.add_done_callback(_retrieved)
        return await asyncio.shield(message)  # the sender's death does not stop a message sent

    async def _carry(
        self, sender: Incarnation, name: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        lose_answer = self.rng.random() < self.faults.lose_answer_p
        while True:
            await asyncio.sleep(self._delay())
            up = self.up.get(name)
            assert up is not None, f"no actor {name}"
            await up.wait()  # down: Ray delivers it once the actor is back
            target = self.live[name]
            self.trace.add(f"{sender}→{target}.{method}")
            context = contextvars.copy_context()
            context.run(CURRENT.set, target)
            call = self.loop.create_task(getattr(target.obj, method)(*args, **kwargs), context=context)
            await asyncio.wait([call, target.died], return_when=asyncio.FIRST_COMPLETED)
            died = not call.done() or call.cancelled() or isinstance(call.exception(), SimulatedCrash)
            if died or lose_answer:
                lose_answer = False
                if not sender.alive:
                    raise SimulatedCrash(f"{sender} is gone: nobody retries its call")
                self.trace.add(f"{sender}→{target}.{method}: {'died' if died else 'answer lost'}, again")
                continue
            return call.result()


def _retrieved(task: asyncio.Task[Any]) -> None:
    """A message whose sender died ends unheard: its outcome is nobody's to log."""
    if not task.cancelled():
        task.exception()


class SimPeer(Peer):
    def __init__(self, name: str, cluster: SimCluster) -> None:
        super().__init__(None)
        self.name = name
        self.cluster = cluster

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return await self.cluster.send(self.name, method, args, kwargs)
