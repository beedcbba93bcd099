"""Calls between the simulated actors, delivered as Ray documents them: after a delay, in
no particular order between calls (an async actor runs them concurrently), and at least
once: a call whose answer is lost is delivered again and the caller gets the second answer
(Ray retries a call whose actor died before answering; every method must be idempotent).
The delays and the redeliveries come from one seeded random source, on simulated time."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from actors.peers import Peer


class Network:
    def __init__(self, rng: random.Random, delay_max_s: float = 0.005, redeliver_p: float = 0.0) -> None:
        self.rng = rng
        self.delay_max_s = delay_max_s
        self.redeliver_p = redeliver_p
        self.delivered = 0
        self.redelivered = 0

    async def deliver(
        self, name: str, objects: Callable[[], dict[str, Any]], method: str, *args: Any, **kwargs: Any
    ) -> Any:
        await asyncio.sleep(self.rng.uniform(0, self.delay_max_s))
        self.delivered += 1
        answer = await getattr(objects()[name], method)(*args, **kwargs)
        if self.rng.random() < self.redeliver_p:  # the answer was lost: delivered again
            self.redelivered += 1
            await asyncio.sleep(self.rng.uniform(0, self.delay_max_s))
            answer = await getattr(objects()[name], method)(*args, **kwargs)
        return answer


class SimPeer(Peer):
    def __init__(self, name: str, objects: Callable[[], dict[str, Any]], network: Network) -> None:
        super().__init__(objects()[name])
        self.name = name
        self._objects = objects
        self._network = network

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return await self._network.deliver(self.name, self._objects, method, *args, **kwargs)
