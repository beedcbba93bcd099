"""Uniform async calls to another actor, whether it is a Ray handle or a local object.

Actors talk to each other through `Peer.call(method, *args)`, so the same actor classes
run inside Ray and, in deterministic tests, as plain objects on one event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

PHASE2_RETRY_S_MAX = 2.0


class Peer:
    def __init__(self, target: Any) -> None:
        self.target = target
        self.remote = hasattr(target, "_actor_id")  # a ray.actor.ActorHandle

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.remote:
            return await getattr(self.target, method).remote(*args, **kwargs)
        return await getattr(self.target, method)(*args, **kwargs)


PeerLookup = Callable[[str], Peer]


def ray_lookup(namespace: str) -> PeerLookup:
    """Resolve actor names lazily, once each; a restarted actor keeps its handle."""
    import ray

    cache: dict[str, Peer] = {}

    def lookup(name: str) -> Peer:
        peer = cache.get(name)
        if peer is None:
            peer = cache[name] = Peer(ray.get_actor(name, namespace=namespace))
        return peer

    return lookup


def local_lookup(objects: dict[str, Any]) -> PeerLookup:
    peers = {name: Peer(obj) for name, obj in objects.items()}
    return peers.__getitem__


async def call_until_done(peer: Peer, method: str, *args: Any) -> Any:
    """For calls that must eventually happen (phase 2 of a decided payment): retry
    application errors such as an unwritable journal with capped backoff. Actor deaths
    are retried by Ray itself (max_task_retries=-1)."""
    delay_s = 0.02
    while True:
        try:
            return await peer.call(method, *args)
        except asyncio.CancelledError:
            raise
        except Exception:
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, PHASE2_RETRY_S_MAX)
