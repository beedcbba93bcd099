"""Payments from concurrent clients (keyed, each key sent twice, and keyless), every call
between the actors delayed and some delivered twice (an answer lost, the call retried), on
simulated time: each key pays once, every acknowledged payment is in the books, and money is
conserved. Dropping the coordinator's check for a redelivered payment id fails it."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import msgspec

from actors.peers import Peer
from ledger.ids import make_id
from ledger.messages import PaymentRequest
from ledger.records import PaymentRecord
from ledger.results import PaymentStatus
from tests.sim.loop import SimulatedLoop
from tests.sim.network import Network, SimPeer
from tests.support.audit import audit
from tests.support.local import LocalLedger
from tests.support.scenario import open_funded_balances


class SimLedger(LocalLedger):
    def __init__(self, data_dir: Path, network: Network, **overrides: Any) -> None:
        super().__init__(data_dir, memory=True, **overrides)
        self.network = network

    def peer(self, name: str) -> Peer:
        return SimPeer(name, lambda: self.objects, self.network)


def test_redelivered_calls_pay_each_key_once(tmp_path: Path) -> None:
    loop = SimulatedLoop()
    rng = random.Random(23)
    network = Network(rng, redeliver_p=0.0)

    async def main() -> None:
        ledger = SimLedger(tmp_path, network, clock=loop.now_ms)
        await ledger.start()
        _, ids, deposits = await open_funded_balances(ledger.client, 4, 50_00)
        network.redeliver_p = 0.3  # from here on, a third of the calls are delivered twice
        paid: dict[str, PaymentRecord] = {}

        async def client(n: int) -> None:
            for k in range(5):
                a, b = rng.sample(ids, 2)
                key = f"admin:c{n}-{k}"
                amount = rng.randint(1, 20_00)
                for attempt in range(2):  # the client retries with the same key, the gateway draws a new id
                    now = loop.now_ms()
                    r = PaymentRequest(make_id("pay", now, rng.randbytes(10)), a, b, amount, "USD", now)
                    r = msgspec.structs.replace(r, idempotency_key=key, fingerprint=key.encode())
                    [outcome] = await ledger.client.pay_outcomes([r])
                    assert outcome.payment is not None and not outcome.conflict
                    if attempt:
                        assert outcome.replayed and outcome.payment.id == paid[key].id
                    else:
                        paid[key] = outcome.payment
                now = loop.now_ms()  # and one without a key: only its id tells a redelivery apart
                r = PaymentRequest(make_id("pay", now, rng.randbytes(10)), b, a, rng.randint(1, 20_00), "USD", now)
                [keyless] = await ledger.client.pay([r])
                paid[keyless.id] = keyless

        await asyncio.gather(*(client(n) for n in range(6)))
        await ledger.coordinator().finish_phase2()
        assert network.redelivered > 20
        statuses = {p.status for p in paid.values()}
        assert PaymentStatus.SUCCESS in statuses
        audit(await ledger.client.all_balances(), [*deposits, *paid.values()])
        await ledger.stop()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
