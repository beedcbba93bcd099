"""Payments from concurrent clients (keyed, each key sent twice, and keyless), every call
between the actors delayed and some delivered twice (an answer lost, the call retried), on
simulated time, from one seed: each key pays once, every acknowledged payment is in the
books, and money is conserved.

    python -m tests.sim.redelivery --seeds 500 --seed-base 1000

runs it over many seeds (exit 1 on the first that fails, naming it); `--seed S --seeds 1`
reruns one. The ids of accounts and balances still come from the registry's own entropy, so
a seed fixes the workload and the deliveries, not yet every interleaving.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
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


def run(seed: int, data_dir: Path) -> dict[str, int]:
    """One seeded run; raises AssertionError on a broken invariant. Its counts."""
    loop = SimulatedLoop()
    rng = random.Random(seed)
    network = Network(rng, redeliver_p=0.0)
    paid: dict[str, PaymentRecord] = {}

    async def main() -> None:
        ledger = SimLedger(data_dir, network, clock=loop.now_ms)
        await ledger.start()
        _, ids, deposits = await open_funded_balances(ledger.client, 4, 50_00)
        network.redeliver_p = 0.3  # from here on, a third of the calls are delivered twice

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
        audit(await ledger.client.all_balances(), [*deposits, *paid.values()])
        await ledger.stop()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    succeeded = sum(p.status == PaymentStatus.SUCCESS for p in paid.values())
    return {"payments": len(paid), "succeeded": succeeded, "redelivered": network.redelivered}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim.redelivery", description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--seed-base", type=int, default=0)
    args = parser.parse_args()
    started, totals = time.perf_counter(), {"payments": 0, "redelivered": 0}
    for seed in range(args.seed_base, args.seed_base + args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                counts = run(seed, Path(tmp))
            except AssertionError as exc:
                print(json.dumps({"seed": seed, "failed": str(exc) or repr(exc)}))
                print(f"rerun: python -m tests.sim.redelivery --seed-base {seed} --seeds 1", file=sys.stderr)
                return 1
        for name in totals:
            totals[name] += counts[name]
    seconds = round(time.perf_counter() - started, 1)
    print(json.dumps({"seeds": args.seeds, "seed_base": args.seed_base, **totals, "seconds": seconds, "failed": 0}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
