"""Load generator: one JSON line per run.

    python -m benchmarks.load --scenario uniform --balances 1000 --connections 64 --seconds 20

Starts its own embedded server (or targets `--url` with `--token`), opens N funded
balances, runs a bounded loopback-only workload at C concurrent connections, then
checks conservation. Scenarios:
  uniform  random pairs of balances
  hot      like uniform, but 10% of payments touch one hot balance
  batch    POST /v1/payments/batch with `--batch` payments per request
  read     80% GET /v1/balances/{id}, 20% payments
  ping     GET /healthz only: the HTTP ceiling of this machine (client and gateway, no
           ledger work), against which the other figures can be read
The client runs on the same machine as the server and competes with it for the CPU, so
the figures are lower bounds for the server; `cpu_ms_per_payment` (or `_per_request`)
splits the CPU each one cost by role (client, gateway, coordinator, shards, registry, the
rest of Ray), measured over the server's own processes when it started them. `--env NAME=VALUE` passes settings to the
server it starts (e.g. RAYLEDGER_GATEWAY_BATCH_MAX=256).
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
from collections.abc import Callable
from pathlib import Path

import aiohttp
import psutil
from prometheus_client.parser import text_string_to_metric_families
from rich.progress import Progress

from benchmarks.cpu import CpuMeter
from benchmarks.server import Server

SCENARIOS = ("uniform", "hot", "batch", "read", "ping")
DEPOSIT = 1_000_000  # major units per balance: no payment in a run can exhaust it


def _pct(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return 0.0
    return round(sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))], 2)


async def coordinator_calls(http: aiohttp.ClientSession) -> tuple[float, float]:
    """(calls, payments) the gateway has sent its coordinators so far, from /metrics."""
    async with http.get("/metrics") as r:
        text = await r.text()
    found = {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("rayledger_gateway_batch_payments")
    }
    return found.get("rayledger_gateway_batch_payments_count", 0.0), found.get(
        "rayledger_gateway_batch_payments_sum", 0.0
    )


async def run_load(
    url: str,
    token: str,
    *,
    scenario: str,
    balances: int,
    connections: int,
    seconds: float,
    batch: int,
    seed: int,
    progress: bool = False,
    server_tree: Callable[[], list[psutil.Process]] = list,
) -> dict[str, object]:
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(url, headers=headers, connector=connector) as http:

        async def post(path: str, body: object) -> tuple[int, object]:
            async with http.post(path, json=body) as r:
                return r.status, await r.json(content_type=None)

        ids: list[str] = []
        stamp = int(time.time())
        setup = asyncio.Semaphore(16)

        async def open_balance(n: int) -> str:
            async with setup:
                _, account = await post("/v1/accounts", {"email": f"load{stamp}-{n}@example.com"})
                _, bal = await post(f"/v1/accounts/{account['id']}/balances", {"currency": "USD"})  # type: ignore[index]
                status, _ = await post("/v1/deposits", {"balance_id": bal["id"], "amount": str(DEPOSIT)})  # type: ignore[index]
                assert status == 201
                return bal["id"]  # type: ignore[index,no-any-return]

        ids = list(await asyncio.gather(*(open_balance(n) for n in range(balances))))
        hot = ids[0]
        latencies_ms: list[float] = []
        statuses: dict[str, int] = {}
        errors = 0
        payments = 0

        def pair() -> tuple[str, str]:
            if scenario == "hot" and rng.random() < 0.1:
                other = rng.choice(ids[1:])
                return (hot, other) if rng.random() < 0.5 else (other, hot)
            a, b = rng.sample(ids, 2)
            return a, b

        def one_payment() -> dict[str, str]:
            a, b = pair()
            return {"balance_from": a, "balance_to": b, "amount": f"{rng.randint(1, 500) / 100:.2f}"}

        deadline = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal errors, payments
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    if scenario == "ping":
                        async with http.get("/healthz") as r:
                            await r.read()
                            ok = r.status == 200
                    elif scenario == "read" and rng.random() < 0.8:
                        async with http.get(f"/v1/balances/{rng.choice(ids)}") as r:
                            await r.read()
                            ok = r.status == 200
                    elif scenario == "batch":
                        status, body = await post(
                            "/v1/payments/batch", {"payments": [one_payment() for _ in range(batch)]}
                        )
                        ok = status == 200
                        if ok:
                            for item in body["results"]:  # type: ignore[index]
                                statuses[str(item.get("status"))] = statuses.get(str(item.get("status")), 0) + 1
                            payments += batch
                    else:
                        status, body = await post("/v1/payments", one_payment())
                        ok = status in (201, 202)
                        if ok:
                            statuses[body["status"]] = statuses.get(body["status"], 0) + 1  # type: ignore[index]
                            payments += 1
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                latencies_ms.append((time.perf_counter() - started) * 1000)
                if not ok:
                    errors += 1

        calls_before = await coordinator_calls(http)
        cpu = CpuMeter(server_tree)
        cpu.start()
        started = time.monotonic()
        with Progress(disable=not progress, transient=True) as bar:
            task = bar.add_task(f"{scenario}, {connections} connections", total=seconds)

            async def tick() -> None:
                while (left := deadline - time.monotonic()) > 0:
                    bar.update(task, completed=seconds - left)
                    await asyncio.sleep(0.5)

            ticker = asyncio.ensure_future(tick())
            await asyncio.gather(*(worker() for _ in range(connections)))
            ticker.cancel()
        elapsed = time.monotonic() - started
        per_payment = scenario in ("uniform", "hot", "batch")
        cpu_ms = cpu.stop(payments if per_payment else len(latencies_ms))
        calls_after = await coordinator_calls(http)
        # Payments only move money between this run's balances (a reused server may hold
        # others): their sum must still be what was deposited into them.
        total = 0
        for balance_id in ids:
            async with http.get(f"/v1/balances/{balance_id}") as r:
                amount = (await r.json())["amount"]
                total += int(amount.replace(".", ""))
    latencies_ms.sort()
    return {
        "scenario": scenario,
        "connections": connections,
        "balances": balances,
        "seconds": round(elapsed, 1),
        "requests": len(latencies_ms),
        "payments": payments,
        "payments_per_s": round(payments / elapsed, 1),
        "requests_per_s": round(len(latencies_ms) / elapsed, 1),
        "p50_ms": _pct(latencies_ms, 0.50),
        "p99_ms": _pct(latencies_ms, 0.99),
        "p999_ms": _pct(latencies_ms, 0.999),
        "mean_ms": round(statistics.fmean(latencies_ms), 2) if latencies_ms else 0.0,
        "errors": errors,
        "statuses": statuses,
        "payments_per_coordinator_call": round(
            (calls_after[1] - calls_before[1]) / max(calls_after[0] - calls_before[0], 1), 1
        ),
        "cpu_ms_per_payment" if per_payment else "cpu_ms_per_request": cpu_ms,
        "conserved": total == len(ids) * DEPOSIT * 100,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", choices=SCENARIOS, default="uniform")
    parser.add_argument("--balances", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--url", help="a running server (default: start one)")
    parser.add_argument("--token", help="its admin token")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="a setting for the server")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    server = None
    if args.url is None:
        data_dir = Path(tempfile.mkdtemp(prefix="rayledger-load-")) / "data"
        env = dict(item.split("=", 1) for item in args.env)
        server = Server(data_dir, "--shards", str(args.shards), env=env).start()
        args.url, args.token = server.url, server.token
    try:
        report = asyncio.run(
            run_load(
                args.url,
                args.token,
                scenario=args.scenario,
                balances=args.balances,
                connections=args.connections,
                seconds=args.seconds,
                batch=args.batch,
                seed=args.seed,
                progress=not args.no_progress,
                server_tree=server.tree if server is not None else list,
            )
        )
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(data_dir.parent, ignore_errors=True)  # a run's journals are ~100 MB
    print(json.dumps(report))
    return 0 if report["conserved"] else 1


if __name__ == "__main__":
    sys.exit(main())
