"""Every call a coordinator makes to another actor (as Ray Serve's controller keeps its Ray
calls in one wrapper): the shards' phase one, phase two, voids and fences, the registry's
quotes. Its methods take typed lists; packing them for the wire happens here, once, and
only when the peer is across a process (a list of Structs is pickled one by one by Ray; one
msgpack bytes object goes whole). The shards accept either form.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from typing import TypeVar

from actors.peers import Peer, PeerLookup, call_until_done, ray_lookup
from actors.registry import Registry
from actors.settings import Settings
from actors.shard import BalanceShard
from actors.topology import REGISTRY_NAME, partition_of, shard_name, shard_of_partition
from ledger.book import OpenReservation
from ledger.messages import HoldRef, SideRequest, pack

PhaseOneReply = tuple[list[int], list[int], list[int]]  # debit checks, credit checks, carried legs not written
T = TypeVar("T")


def _packed(items: list[T]) -> list[T] | bytes:
    return pack(items)


def _as_is(items: list[T]) -> list[T] | bytes:
    return items


class Owed:
    """Phase two owed to one shard: legs of decided payments not yet sent there."""

    __slots__ = ("payments", "posts", "voids")

    def __init__(self) -> None:
        self.posts: list[HoldRef] = []
        self.voids: list[HoldRef] = []
        self.payments: list[str] = []  # with a leg here, each once

    def add(self, other: Owed) -> None:
        self.posts += other.posts
        self.voids += other.voids
        self.payments += other.payments

    def only(self, refs: list[HoldRef]) -> Owed:
        """The part of this owed that concerns `refs` (those a shard could not write)."""
        again = Owed()
        ids = {r.payment_id for r in refs}
        again.posts = [r for r in self.posts if r.payment_id in ids]
        again.voids = [r for r in self.voids if r.payment_id in ids]
        again.payments = [p for p in self.payments if p in ids]
        return again


class Remote:
    def __init__(self, settings: Settings, index: int, peers: PeerLookup | None) -> None:
        self.settings = settings
        self.index = index
        self._peers = peers

    def _peer(self, name: str) -> Peer:
        if self._peers is None:  # looked up on first use: Ray is up by then
            self._peers = ray_lookup(self.settings.namespace)
        return self._peers(name)

    def shard_of(self, balance_id: str) -> int:
        return shard_of_partition(partition_of(balance_id, self.settings.partitions), self.settings.shards)

    async def fence(self, epoch: int) -> list[OpenReservation]:
        """Every shard refuses this coordinator's older epochs from now on; the
        reservations it left open anywhere."""
        found = await asyncio.gather(
            *(
                self._peer(shard_name(k)).invoke(BalanceShard.fence, self.index, epoch)
                for k in range(self.settings.shards)
            )
        )
        return [r for open_here in found for r in open_here]

    async def phase_one(
        self, shard: int, epoch: int, debits: list[SideRequest], credits: list[SideRequest], carried: Owed | None
    ) -> PhaseOneReply:
        """Reserve the debits and prepare the credits owned by `shard`, carrying the phase
        two owed there (applied first, so what it releases counts for the new legs)."""
        peer = self._peer(shard_name(shard))
        wire = _packed if peer.remote else _as_is
        owed = () if carried is None else (wire(carried.posts), wire(carried.voids))
        return await peer.invoke(BalanceShard.phase_one, self.index, epoch, wire(debits), wire(credits), *owed)

    async def phase_two(self, shard: int, owed: Owed) -> None:
        """Post and void decided legs on `shard`, until it has made them durable."""
        peer = self._peer(shard_name(shard))
        wire = _packed if peer.remote else _as_is
        await call_until_done(peer, BalanceShard.phase_two, wire(owed.posts), wire(owed.voids))

    async def void(self, refs: list[HoldRef]) -> None:
        """Release reservations of what was not decided (or a hold voided or expired),
        each shard's in one call, until done."""
        by_shard: dict[int, list[HoldRef]] = defaultdict(list)
        for ref in refs:
            by_shard[self.shard_of(ref.balance_id)].append(ref)
        peers = {k: self._peer(shard_name(k)) for k in by_shard}
        await asyncio.gather(
            *(
                call_until_done(peers[k], BalanceShard.void, _packed(rs) if peers[k].remote else rs)
                for k, rs in by_shard.items()
            )
        )

    async def use_quotes(self, uses: list[tuple[str, str]], now_ms: int) -> list[bool] | None:
        """Use each exchange quote (quote id, payment id) once: whether each could be; None if
        the registry could not answer (a journal down, restarting), and so none was used."""
        try:
            return await self._peer(REGISTRY_NAME).invoke(Registry.use_quotes, uses, now_ms)
        except Exception:
            return None

    async def release_quotes(self, uses: list[tuple[str, str]]) -> None:
        """Give quotes back (their payments were aborted); if the registry cannot take them
        now, their retries end quote_expired: a final answer, with nothing moved."""
        with contextlib.suppress(Exception):
            await self._peer(REGISTRY_NAME).invoke(Registry.release_quotes, uses)
