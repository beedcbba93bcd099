"""The Python client with and without batching: one JSON line per round, then a summary.

    python -m benchmarks.client_batching --calls 64 --seconds 10 --rounds 3

Starts a real server (or takes `--url`/`--token`), opens funded balances, then keeps
`--calls` concurrent `payments.create` calls going through one async `Client` for
`--seconds`, in alternating rounds with batching on (concurrent calls coalesced into batch
requests, one in flight) and off (a request per call). The summary compares the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.funding import conserved, open_balances, total
from benchmarks.server import Server
from rayledger.client import Client


async def one_round(
    url: str, token: str, ids: list[str], calls: int, seconds: float, batching: bool
) -> dict[str, object]:
    rng = random.Random(len(ids))
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = 0
    async with Client(url, token, batching=batching) as ledger:
        deadline = time.monotonic() + seconds

        async def caller() -> None:
            nonlocal errors
            while time.monotonic() < deadline:
                balance_from, balance_to = rng.sample(ids, 2)
                started = time.perf_counter()
                try:
                    paid = await ledger.payments.create(balance_from=balance_from, balance_to=balance_to, amount="0.01")
                except Exception:
                    errors += 1
                    continue
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[paid.status] = statuses.get(paid.status, 0) + 1

        started = time.monotonic()
        await asyncio.gather(*(caller() for _ in range(calls)))
        elapsed = time.monotonic() - started
    latencies.sort()
    return {
        "batching": batching,
        "calls": calls,
        "payments": len(latencies),
        "payments_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(latencies[len(latencies) // 2], 1) if latencies else None,
        "p99_ms": round(latencies[int(len(latencies) * 0.99)], 1) if latencies else None,
        "errors": errors,
        "statuses": statuses,
    }


async def run(url: str, token: str, args: argparse.Namespace) -> int:
    ids = await open_balances(url, token, args.balances)
    rounds: dict[bool, list[dict[str, object]]] = {True: [], False: []}
    for _ in range(args.rounds):
        for batching in (True, False):  # alternating: the machine's speed drifts within minutes
            report = await one_round(url, token, ids, args.calls, args.seconds, batching)
            rounds[batching].append(report)
            print(json.dumps(report), flush=True)
    ok = conserved(await total(url, token, ids), ids)

    def median(key: str, batching: bool) -> float:
        return statistics.median(float(r[key]) for r in rounds[batching])  # type: ignore[arg-type]

    on, off = median("payments_per_s", True), median("payments_per_s", False)
    errors = sum(int(r["errors"]) for rs in rounds.values() for r in rs)  # type: ignore[call-overload]
    summary = {
        "calls": args.calls,
        "rounds": args.rounds,
        "batching_on_per_s": on,
        "batching_off_per_s": off,
        "on_over_off": round(on / off, 2) if off else None,
        "p99_on_ms": median("p99_ms", True),
        "p99_off_ms": median("p99_ms", False),
        "errors": errors,
        "conserved": ok,
    }
    print(json.dumps({"summary": summary}), flush=True)
    return 0 if ok and not errors else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.client_batching", description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=64, help="concurrent payments.create calls")
    parser.add_argument("--seconds", type=float, default=10.0, help="per round")
    parser.add_argument("--rounds", type=int, default=3, help="of each kind, alternating")
    parser.add_argument("--balances", type=int, default=200)
    parser.add_argument("--url", help="a running server (default: start one)")
    parser.add_argument("--token", help="its admin token")
    args = parser.parse_args(argv)
    if args.url is not None:
        return asyncio.run(run(args.url, args.token, args))
    data_dir = Path(tempfile.mkdtemp(prefix="rayledger-client-bench-")) / "data"
    server = Server(data_dir).start()
    try:
        return asyncio.run(run(server.url, server.token, args))
    finally:
        server.stop()
        shutil.rmtree(data_dir.parent, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
