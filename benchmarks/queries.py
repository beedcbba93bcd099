"""History reads as a user makes them, over a ledger with history: one JSON line.

    python -m benchmarks.queries --payments 200000 --balances 1000 --samples 300

Starts a real server (or takes `--url`/`--token`), opens funded balances, pays
`--payments` keyed payments between them through the batch endpoint, waits for the
history index to store them, then times one request at a time (no other load) of each
kind a user makes of history: a payment by id, a statement page (`/entries`) and the
page after it, a balance's payments, a payment by its Idempotency-Key. Reports p50 and
p99 in ms per kind. Served from the stored index, not from the rows still in memory:
`--payments` should be several times the index's store size (20,000 positions).
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
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.funding import open_balances
from benchmarks.server import Server

BATCH = 100
SENDERS = 8
SETTLE_S = 8.0  # longer than the index's write-after (5 s): what is held in memory is stored


async def pay(url: str, token: str, ids: list[str], payments: int) -> list[tuple[str, str]]:
    """(payment id, its Idempotency-Key) of each payment made."""
    rng = random.Random(7)
    made: list[tuple[str, str]] = []
    headers = {"Authorization": f"Bearer {token}"}
    batches = payments // BATCH
    async with aiohttp.ClientSession(headers=headers) as http:

        async def sender(n: int) -> None:
            for _ in range(n, batches, SENDERS):
                items = []
                for _ in range(BATCH):
                    balance_from, balance_to = rng.sample(ids, 2)
                    key = uuid.uuid4().hex
                    items.append(
                        {
                            "balance_from": balance_from,
                            "balance_to": balance_to,
                            "amount": "0.01",
                            "idempotency_key": key,
                        }
                    )
                async with http.post(f"{url}/v1/payments/batch", json={"payments": items}) as response:
                    assert response.status == 200, await response.text()
                    answer = await response.json()
                for item, result in zip(items, answer["results"], strict=True):
                    assert result.get("status") == "success", result
                    made.append((result["id"], item["idempotency_key"]))

        await asyncio.gather(*(sender(n) for n in range(SENDERS)))
    return made


async def measure(url: str, token: str, args: argparse.Namespace) -> dict[str, object]:
    ids = await open_balances(url, token, args.balances)
    started = time.monotonic()
    made = await pay(url, token, ids, args.payments)
    paid_s = time.monotonic() - started
    await asyncio.sleep(SETTLE_S)
    rng = random.Random(11)
    timings: dict[str, list[float]] = {}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:

        async def timed(kind: str, path: str) -> dict[str, Any]:
            begun = time.perf_counter()
            async with http.get(f"{url}{path}") as response:
                assert response.status == 200, (path, response.status, await response.text())
                answer: dict[str, Any] = await response.json()
            timings.setdefault(kind, []).append((time.perf_counter() - begun) * 1000)
            return answer

        for _ in range(args.samples):
            payment_id, key = rng.choice(made)
            balance = rng.choice(ids)
            found = await timed("payment_by_id", f"/v1/payments/{payment_id}")
            assert found["id"] == payment_id
            page = await timed("statement_page", f"/v1/balances/{balance}/entries?limit=20")
            lines = page["data"]
            assert len(lines) == 20, "every balance has a deposit and many payments"
            after = lines[-1]["id"]
            await timed("statement_next_page", f"/v1/balances/{balance}/entries?limit=20&starting_after={after}")
            await timed("payments_of_balance", f"/v1/payments?balance={balance}&limit=20")
            by_key = await timed("payment_by_key", f"/v1/payments?idempotency_key={key}")
            assert [p["id"] for p in by_key["data"]] == [payment_id]

    def pct(values: list[float], q: float) -> float:
        values = sorted(values)
        return round(values[min(len(values) - 1, int(len(values) * q))], 2)

    return {
        "scenario": "queries",
        "payments": len(made),
        "balances": args.balances,
        "payments_per_s_while_building": round(len(made) / paid_s, 1),
        "samples": args.samples,
        **{
            kind: {"p50_ms": pct(v, 0.5), "p99_ms": pct(v, 0.99), "mean_ms": round(statistics.fmean(v), 2)}
            for kind, v in timings.items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.queries", description=__doc__.split("\n")[0])
    parser.add_argument("--payments", type=int, default=200_000)
    parser.add_argument("--balances", type=int, default=1_000)
    parser.add_argument("--samples", type=int, default=300, help="requests of each kind")
    parser.add_argument("--url", help="a running server (default: start one)")
    parser.add_argument("--token", help="its admin token")
    args = parser.parse_args(argv)
    if args.url is not None:
        report = asyncio.run(measure(args.url, args.token, args))
    else:
        data_dir = Path(tempfile.mkdtemp(prefix="rayledger-queries-")) / "data"
        server = Server(data_dir).start()
        try:
            report = asyncio.run(measure(server.url, server.token, args))
        finally:
            server.stop()
            shutil.rmtree(data_dir.parent, ignore_errors=True)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
