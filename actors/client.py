"""LedgerClient: the gateway's (and tests') view of the actors, with routing.

It knows the topology (which shard owns a balance, which coordinator owns a payment) and
batches by owner: one call per actor per batch of requests.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import msgspec

from actors.coordinator import PaymentCoordinator
from actors.events import EventReads
from actors.peers import Method, Peer, PeerLookup
from actors.registry import Registry
from actors.settings import Settings
from actors.shard import BalanceShard
from actors.topology import (
    REGISTRY_NAME,
    WEBHOOKS_NAME,
    coordinator_name,
    coordinator_of,
    partition_of,
    shard_name,
    shard_of_partition,
)
from ledger.activity import Minute, merged
from ledger.book import BalanceView
from ledger.messages import HoldRequest, PaymentQuery, PaymentRequest, TransferRequest, pack, unpack
from ledger.outcomes import Outcome
from ledger.records import HoldRecord, PaymentRecord, TransferRecord
from ledger.views import BalanceInfo


class LedgerClient:
    def __init__(self, settings: Settings, peers: PeerLookup) -> None:
        self.settings = settings
        self._peers = peers

    @property
    def registry(self) -> Peer:
        return self._peers(REGISTRY_NAME)

    @property
    def webhooks(self) -> Peer:
        return self._peers(WEBHOOKS_NAME)

    def shard_for(self, balance_id: str) -> int:
        return shard_of_partition(partition_of(balance_id, self.settings.partitions), self.settings.shards)

    def shard(self, index: int) -> Peer:
        return self._peers(shard_name(index))

    def coordinator(self, index: int) -> Peer:
        return self._peers(coordinator_name(index))

    async def pay(self, requests: list[PaymentRequest]) -> list[PaymentRecord]:
        """Payments without idempotency keys: each gets its record."""
        outcomes = await self.pay_outcomes(requests)
        assert all(o.payment is not None for o in outcomes)
        return [o.payment for o in outcomes]  # type: ignore[misc]

    async def pay_outcomes(
        self, requests: list[PaymentRequest], method: Method[..., list[Outcome] | bytes] = PaymentCoordinator.pay
    ) -> list[Outcome]:
        groups: dict[int, list[int]] = defaultdict(list)
        for n, r in enumerate(requests):
            groups[coordinator_of(r.payment_id, self.settings.coordinators)].append(n)
        replies = await asyncio.gather(*(self._pay(c, [requests[n] for n in ns], method) for c, ns in groups.items()))
        out: list[Outcome | None] = [None] * len(requests)
        for ns, outcomes in zip(groups.values(), replies, strict=True):
            for n, o in zip(ns, unpack(outcomes, list[Outcome]), strict=True):
                out[n] = o
        return out  # type: ignore[return-value]

    async def transfer_outcomes(self, requests: list[TransferRequest]) -> list[Outcome]:
        return await self.pay_outcomes(requests, PaymentCoordinator.transfer)  # type: ignore[arg-type]

    async def get_transfer(self, transfer_id: str) -> TransferRecord | None:
        return await self.coordinator_of(transfer_id).invoke(PaymentCoordinator.get_transfer, transfer_id)

    async def _pay(
        self, coordinator: int, requests: list[PaymentRequest], method: Method[..., list[Outcome] | bytes]
    ) -> list[Outcome] | bytes:
        """Packed for Ray (one bytes object instead of a pickle per Struct); as they are for
        the coordinator an ingress runs beside (no copy at all)."""
        peer = self.coordinator(coordinator)
        return await peer.invoke(method, pack(requests) if peer.remote else requests)

    async def list_payments(self, q: PaymentQuery) -> tuple[list[PaymentRecord], bool]:
        """One page across every coordinator, in `q`'s order; (page, whether there are more
        in that direction)."""
        wider = msgspec.structs.replace(q, limit=q.limit + 1)
        pages = await asyncio.gather(
            *(
                self.coordinator(c).invoke(PaymentCoordinator.list_payments, wider)
                for c in range(self.settings.coordinators)
            )
        )
        merged = sorted((p for page in pages for p in page), key=lambda p: p.id, reverse=not q.ascending)
        return merged[: q.limit], len(merged) > q.limit

    async def list_holds(
        self, balance_id: str | None, status: str | None, limit: int, before: str | None, after: str | None, asc: bool
    ) -> tuple[list[HoldRecord], bool]:
        """One page across every coordinator; (page, whether there are more that way)."""
        return await self._merged_page(PaymentCoordinator.list_holds, (balance_id, status), limit, (before, after, asc))

    async def list_transfers(
        self, balance_id: str | None, limit: int, before: str | None, after: str | None, asc: bool
    ) -> tuple[list[TransferRecord], bool]:
        return await self._merged_page(PaymentCoordinator.list_transfers, (balance_id,), limit, (before, after, asc))

    def event_sources(self) -> list[str]:
        """The journals events come from: the registry's and each coordinator's."""
        return ["r00", *(f"c{c:02d}" for c in range(self.settings.coordinators))]

    def event_peer(self, source: str) -> Peer:
        return self.registry if source == "r00" else self.coordinator(int(source[1:]))

    async def event_positions(self) -> dict[str, int]:
        """Every event journal's position now: what comes after it is yet to happen."""
        sources = self.event_sources()
        seqs = await asyncio.gather(*(self.event_peer(s).invoke(EventReads.event_position) for s in sources))
        return dict(zip(sources, seqs, strict=True))

    async def event_positions_after(self, event_id: str) -> dict[str, int]:
        """Where a stream resumed after `event_id` reads on from, journal by journal."""
        sources = self.event_sources()
        seqs = await asyncio.gather(
            *(self.event_peer(s).invoke(EventReads.event_position_after, event_id) for s in sources)
        )
        return dict(zip(sources, seqs, strict=True))

    async def events(
        self, limit: int, before: str | None, after: str | None, event_type: str | None, ascending: bool
    ) -> tuple[list[tuple[str, Any]], bool]:
        """One page of events from every journal, by event id (newest first, or oldest
        first when `ascending`); whether there are more that way."""
        pages = await asyncio.gather(
            *(
                self.event_peer(s).invoke(EventReads.events, limit + 1, before, after, event_type, ascending)
                for s in self.event_sources()
            )
        )
        merged = sorted((e for page in pages for e in page), key=lambda e: e[0], reverse=not ascending)
        return merged[:limit], len(merged) > limit

    async def events_after(self, positions: dict[str, int], limit: int) -> list[tuple[str, int, str, Any]]:
        """(source, seq, event id, record) after each journal's position, in each one's order."""
        sources = self.event_sources()
        pages = await asyncio.gather(
            *(self.event_peer(s).invoke(EventReads.events_after, positions.get(s, 0), limit) for s in sources)
        )
        return [(s, seq, eid, record) for s, page in zip(sources, pages, strict=True) for seq, eid, record in page]

    async def events_after_encoded(self, positions: dict[str, int], limit: int) -> list[tuple[str, int, bytes]]:
        """`events_after`, each record still encoded (the caller decodes it)."""
        sources = self.event_sources()
        pages = await asyncio.gather(
            *(self.event_peer(s).invoke(EventReads.events_after_encoded, positions.get(s, 0), limit) for s in sources)
        )
        return [(s, seq, body) for s, page in zip(sources, pages, strict=True) for seq, body in page]

    async def _merged_page(
        self,
        method: Method[..., list[Any]],
        filters: tuple[Any, ...],
        limit: int,
        cursor: tuple[str | None, str | None, bool],
    ) -> tuple[list[Any], bool]:
        pages = await asyncio.gather(
            *(
                self.coordinator(c).invoke(method, *filters, limit + 1, *cursor)
                for c in range(self.settings.coordinators)
            )
        )
        merged = sorted((r for page in pages for r in page), key=lambda r: r.id, reverse=not cursor[2])
        return merged[:limit], len(merged) > limit

    async def finish_phase2(self) -> int:
        """Have every coordinator send the phase two it still owes (a clean stop); the
        number of payments left unfinished."""
        left = await asyncio.gather(
            *(self.coordinator(c).invoke(PaymentCoordinator.finish_phase2) for c in range(self.settings.coordinators))
        )
        return sum(left)

    async def activity(self) -> list[Minute]:
        """Payments decided per minute over the last hour, all coordinators together."""
        parts = await asyncio.gather(
            *(self.coordinator(c).invoke(PaymentCoordinator.activity) for c in range(self.settings.coordinators))
        )
        return merged(list(parts))

    def coordinator_of(self, some_id: str) -> Peer:
        return self.coordinator(coordinator_of(some_id, self.settings.coordinators))

    async def refund(self, request: PaymentRequest) -> Outcome:
        """On the coordinator that decided the refunded payment (and owns the refund's id)."""
        assert request.refund_of is not None
        return await self.coordinator_of(request.refund_of).invoke(PaymentCoordinator.refund, request)

    async def refunds_of(self, payment_id: str) -> list[PaymentRecord]:
        return await self.coordinator_of(payment_id).invoke(PaymentCoordinator.refunds_of, payment_id)

    async def place_hold(self, request: HoldRequest) -> Outcome:
        return await self.coordinator_of(request.hold_id).invoke(PaymentCoordinator.place_hold, request)

    async def capture_hold(self, hold_id: str, *args: Any) -> Outcome:
        return await self.coordinator_of(hold_id).invoke(PaymentCoordinator.capture_hold, hold_id, *args)

    async def void_hold(self, hold_id: str, *args: Any) -> Outcome:
        return await self.coordinator_of(hold_id).invoke(PaymentCoordinator.void_hold, hold_id, *args)

    async def get_hold(self, hold_id: str) -> HoldRecord | None:
        return await self.coordinator_of(hold_id).invoke(PaymentCoordinator.get_hold, hold_id)

    async def get_payment(self, payment_id: str) -> PaymentRecord | None:
        return await self.coordinator(coordinator_of(payment_id, self.settings.coordinators)).invoke(
            PaymentCoordinator.get_payment, payment_id
        )

    async def get_balances(self, balance_ids: list[str]) -> list[BalanceView | None]:
        groups: dict[int, list[int]] = defaultdict(list)
        for n, b in enumerate(balance_ids):
            groups[self.shard_for(b)].append(n)
        replies = await asyncio.gather(
            *(self.shard(k).invoke(BalanceShard.get_balances, [balance_ids[n] for n in ns]) for k, ns in groups.items())
        )
        out: list[BalanceView | None] = [None] * len(balance_ids)
        for ns, views in zip(groups.values(), replies, strict=True):
            for n, v in zip(ns, views, strict=True):
                out[n] = v
        return out

    async def lookup_balances(self, balance_ids: list[str]) -> list[BalanceInfo | None]:
        return await self.registry.invoke(Registry.lookup_balances, balance_ids)

    async def totals(self) -> dict[str, int]:
        """Per-currency sum over every balance (issuers included): 0 when money is conserved."""
        per_shard = await asyncio.gather(
            *(self.shard(k).invoke(BalanceShard.totals) for k in range(self.settings.shards))
        )
        totals: dict[str, int] = defaultdict(int)
        for t in per_shard:
            for currency, amount in t.items():
                totals[currency] += amount
        return dict(totals)

    async def all_balances(self) -> list[BalanceView]:
        per_shard = await asyncio.gather(
            *(self.shard(k).invoke(BalanceShard.all_balances) for k in range(self.settings.shards))
        )
        return [v for views in per_shard for v in views]

    async def status(self) -> dict[str, Any]:
        """Every actor recovered and writable? Used by /readyz."""
        shards = await asyncio.gather(*(self.shard(k).invoke(BalanceShard.stats) for k in range(self.settings.shards)))
        coordinators = await asyncio.gather(
            *(self.coordinator(c).invoke(PaymentCoordinator.stats) for c in range(self.settings.coordinators))
        )
        await self.registry.invoke(Registry.ready)
        return {"shards": shards, "coordinators": coordinators}
