"""Uniform async calls to another actor, whether it is a Ray handle or a local object.

Actors talk to each other through `Peer.invoke(Class.method, *args)`, so the same actor
classes run inside Ray and, in deterministic tests, as plain objects on one event loop. The
method is named by reference, not by a string: a renamed or removed one fails where it is
called, and a type checker sees the arguments and the result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from actors.channel import Channel, ChannelClosed
from actors.topology import is_shard_name

PHASE2_RETRY_S_MAX = 2.0
P = ParamSpec("P")
R = TypeVar("R")
Method = Callable[Concatenate[Any, P], Awaitable[R]]  # a coroutine function of an actor class


class Peer:
    """`streamed`: methods that go over a direct stream to the actor when one is up
    (actors.channel), else through Ray."""

    def __init__(self, target: Any, streamed: frozenset[str] = frozenset()) -> None:
        self.target = target
        self.remote = hasattr(target, "_actor_id")  # a ray.actor.ActorHandle
        self.streamed = streamed
        self.channel = Channel(self._channel_address) if self.remote and streamed else None

    async def _channel_address(self) -> tuple[str, int, bytes]:
        host, port, secret = await self.target.channel_address.remote()
        return host, port, secret

    async def invoke(self, method: Method[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """`method` (e.g. `Registry.get_account`) called on the target."""
        return await self.call(method.__name__, *args, **kwargs)  # type: ignore[no-any-return]

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """The call by name, as Ray and the direct stream carry it: `invoke` is the typed way."""
        if self.channel is not None and method in self.streamed and not kwargs:
            try:
                return await self.channel.call(method, *args)
            except ChannelClosed:
                pass  # Ray delivers it, to this incarnation or the next (methods are idempotent)
        if self.remote:
            return await getattr(self.target, method).remote(*args, **kwargs)
        return await getattr(self.target, method)(*args, **kwargs)


PeerLookup = Callable[[str], Peer]


SHARD_STREAMED = frozenset({"phase_one", "phase_two"})  # once per batch per shard, on every payment's path


def ray_lookup(namespace: str) -> PeerLookup:
    """Resolve actor names lazily, once each; a restarted actor keeps its handle. Shards'
    per-batch calls take a direct stream when one is up."""
    import ray  # here: the ledger's plain classes run without Ray too (actors.inprocess)

    cache: dict[str, Peer] = {}

    def lookup(name: str) -> Peer:
        peer = cache.get(name)
        if peer is None:
            streamed = SHARD_STREAMED if is_shard_name(name) else frozenset()
            peer = cache[name] = Peer(ray.get_actor(name, namespace=namespace), streamed)
        return peer

    return lookup


def local_lookup(objects: dict[str, Any]) -> PeerLookup:
    peers = {name: Peer(obj) for name, obj in objects.items()}
    return peers.__getitem__


async def call_until_done(peer: Peer, method: Method[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """For calls that must eventually happen (phase 2 of a decided payment): retry
    application errors such as an unwritable journal with capped backoff. Actor deaths
    are retried by Ray itself (max_task_retries=-1)."""
    delay_s = 0.02
    while True:
        try:
            return await peer.invoke(method, *args, **kwargs)
        except asyncio.CancelledError:
            raise
        except Exception:
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, PHASE2_RETRY_S_MAX)
