"""Recovery time of a large journal: one JSON line.

    python -m benchmarks.recovery --records 1000000

Builds a ledger whose journals hold at least `--records` records, by running real
payments through the in-process engine (the same actor classes and SQLite journals as the
server, without Ray, so the build is fast), then measures:
  replay_s          rebuilding every actor from its journals in one process (snapshots
                    every `snapshot_every_records` per partition, as in production)
  serve_ready_s     `rayledger serve` on that data directory: process start, Ray start,
                    actor recovery, until /readyz answers 200
  verify_s          `rayledger verify`: the offline audit, replaying from genesis
and checks that the served ledger shows the issuer balance every deposit came from.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from rich.progress import Progress

from actors.audit import count_records, journal_files
from actors.inprocess import InProcessLedger
from benchmarks.funding import open_funded_balances, payment
from benchmarks.server import Server, rayledger_command

PARTITIONS = 4  # what benchmarks.server starts with
BALANCES = 2_000
BATCH = 2_000
DEPOSIT_MINOR = 10**9


async def build(data_dir: Path, records: int, *, progress: bool) -> int:
    """Fill `data_dir` until its journals hold `records` records; returns the count. A
    data directory built before is measured as it is (repeat runs skip the build)."""
    if journal_files(data_dir):
        return sum(count_records(p) for p in journal_files(data_dir))
    rng = random.Random(7)
    ledger = await InProcessLedger(data_dir, partitions=PARTITIONS).start()
    _, ids, _ = await open_funded_balances(ledger.client, BALANCES, DEPOSIT_MINOR, prefix="recovery")

    def written() -> int:
        return sum(j.last_seq for j in ledger.journals())

    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("writing journals", total=records)
        while (done := written()) < records:
            bar.update(task, completed=done)
            await ledger.client.pay([payment(*rng.sample(ids, 2), rng.randint(1, 10_000)) for _ in range(BATCH)])
    await ledger.stop()
    return sum(count_records(p) for p in journal_files(data_dir))


async def replay(data_dir: Path) -> float:
    started = time.perf_counter()
    ledger = await InProcessLedger(data_dir, partitions=PARTITIONS).start()
    elapsed = time.perf_counter() - started
    await ledger.stop()
    return elapsed


def serve_until_ready(data_dir: Path) -> tuple[float, bool]:
    """Seconds from `rayledger serve` to ready, and whether it serves the recovered state
    (the issuer balance is minus every deposit)."""
    server = Server(data_dir)
    started = time.perf_counter()
    server.start()
    elapsed = time.perf_counter() - started

    def get(path: str) -> dict[str, str]:
        request = urllib.request.Request(f"{server.url}{path}", headers={"Authorization": f"Bearer {server.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    try:
        issuer = get("/v1/currencies/USD")["issuer_balance_id"]
        amount = get(f"/v1/balances/{issuer}")["amount"]
    finally:
        server.stop()
    return elapsed, int(amount.replace(".", "")) == -BALANCES * DEPOSIT_MINOR


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.recovery", description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--data-dir", type=Path, help="build into this directory, or measure what it already holds")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="rayledger-recovery-")) / "data"
    started = time.perf_counter()
    total = asyncio.run(build(data_dir, args.records, progress=not args.no_progress))
    build_s = time.perf_counter() - started
    replay_s = asyncio.run(replay(data_dir))
    ready_s, served = serve_until_ready(data_dir)
    started = time.perf_counter()
    verify = subprocess.run(
        [*rayledger_command(), "verify", "--data-dir", str(data_dir)], capture_output=True, text=True, check=False
    )
    verify_s = time.perf_counter() - started
    report = {
        "scenario": "recovery",
        "records": total,
        "build_s": round(build_s, 1),
        "replay_s": round(replay_s, 2),
        "serve_ready_s": round(ready_s, 2),
        "verify_s": round(verify_s, 1),
        "verify_ok": verify.returncode == 0,
        "served": served,
    }
    print(json.dumps(report))
    if args.data_dir is None and report["verify_ok"]:
        shutil.rmtree(data_dir.parent, ignore_errors=True)  # ~0.5 GB; kept when verify failed, to look at
    return 0 if report["verify_ok"] and served else 1


if __name__ == "__main__":
    sys.exit(main())
