"""Engine throughput without HTTP: one JSON line.

    python -m benchmarks.engine --batch 64 --concurrency 1 --seconds 10

Starts a private local Ray instance and the real actors (SQLite journals in a temp dir),
opens funded balances, then keeps `--concurrency` calls of `--batch` payments in flight
from this driver, as the gateway's batcher does. Comparing it with `benchmarks.load`
separates the HTTP cost from the engine's (coordinator, shards, journals, Ray calls).
`--in-process` runs the same actor classes on one event loop without Ray.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from actors.client import LedgerClient
from benchmarks.funding import open_funded_balances, payment
from ledger.results import PaymentStatus

DEPOSIT_MINOR = 10**12


async def drive(client: LedgerClient, balances: int, batch: int, concurrency: int, seconds: float) -> dict[str, object]:
    _, ids, _ = await open_funded_balances(client, balances, DEPOSIT_MINOR, prefix="engine")
    rng = random.Random(1)
    latencies: list[float] = []
    done = 0
    deadline = time.monotonic() + seconds

    async def loop() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            started = time.perf_counter()
            outcomes = await client.pay_outcomes(
                [payment(*rng.sample(ids, 2), rng.randint(1, 500)) for _ in range(batch)]
            )
            latencies.append((time.perf_counter() - started) * 1000)
            assert all(o.payment is not None and o.payment.status == PaymentStatus.SUCCESS for o in outcomes)
            done += batch

    started = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    views = await client.get_balances(ids)
    latencies.sort()
    return {
        "payments": done,
        "payments_per_s": round(done / elapsed, 1),
        "call_p50_ms": round(latencies[len(latencies) // 2], 1),
        "call_p99_ms": round(latencies[int(len(latencies) * 0.99)], 1),
        "conserved": sum(v.amount_minor for v in views if v is not None) == len(ids) * DEPOSIT_MINOR,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.engine", description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--balances", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--in-process", action="store_true", help="no Ray: the actor classes on one event loop")
    args = parser.parse_args(argv)
    temp_dir = tempfile.mkdtemp(prefix="rayledger-engine-")
    data_dir = Path(temp_dir) / "data"
    overrides = {"partitions": 4, "shards": args.shards}

    async def in_process() -> dict[str, object]:
        from actors.inprocess import InProcessLedger

        ledger = await InProcessLedger(data_dir, **overrides).start()
        try:
            return await drive(ledger.client, args.balances, args.batch, args.concurrency, args.seconds)
        finally:
            await ledger.stop()

    if args.in_process:
        report = asyncio.run(in_process())
    else:
        import ray

        from actors.factory import start_actors
        from actors.peers import ray_lookup
        from actors.settings import Settings

        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=128 * 2**20,
            _temp_dir=temp_dir,
            namespace="rayledger-bench",
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
        try:
            settings = Settings(data_dir=str(data_dir), namespace="rayledger-bench", **overrides)  # type: ignore[arg-type]
            start_actors(settings)
            client = LedgerClient(settings, ray_lookup(settings.namespace))
            report = asyncio.run(drive(client, args.balances, args.batch, args.concurrency, args.seconds))
        finally:
            ray.shutdown()
    report = {
        "scenario": "engine-in-process" if args.in_process else "engine",
        "batch": args.batch,
        "concurrency": args.concurrency,
        "shards": args.shards,
        **report,
    }
    print(json.dumps(report))
    shutil.rmtree(temp_dir, ignore_errors=True)  # journals and Ray's session files
    return 0 if report["conserved"] else 1


if __name__ == "__main__":
    sys.exit(main())
