"""Shard memory per balance: one JSON line.

    python -m benchmarks.memory --balances 1000000

Builds a partition's balance book the way a shard does on recovery (records encoded and
decoded by the journal codec, then applied), funds every balance with a deposit (a
prepare and a post), and reports the Python heap it holds per balance (tracemalloc, after
a full collection) and, from a second build in a fresh process without tracing, the
process RSS growth. The book is all a shard keeps per balance; history stays on disk.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import sys
import time
import tracemalloc

import psutil
from rich.progress import Progress

from ledger.book import BalanceBook
from ledger.ids import make_id
from ledger.records import BalanceOpened, RecordCodec


def build(balances: int, *, trace: bool, progress: bool = False) -> tuple[int, float]:
    """Bytes held by the book (heap if `trace`, else RSS growth) and seconds taken."""
    codec = RecordCodec()
    process = psutil.Process()
    gc.collect()
    rss_before = process.memory_info().rss
    if trace:
        tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    book = BalanceBook()
    started = time.perf_counter()
    now_ms = int(time.time() * 1000)
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("opening and funding balances", total=balances)
        for n in range(balances):
            balance_id = make_id("bal", now_ms, os.urandom(10))
            book.apply(codec.decode(codec.encode(BalanceOpened(balance_id, "USD", 0, False))))
            deposit = make_id("pay", now_ms, os.urandom(10))
            code, prepared = book.decide_prepare(deposit, balance_id, 1_000_000 + n, "USD", 0, 1)
            assert prepared is not None, code
            book.apply(codec.decode(codec.encode(prepared)))
            posted = book.decide_post(deposit, balance_id, now_ms, None, None)
            assert posted is not None
            book.apply(codec.decode(codec.encode(posted)))
            if n % 10_000 == 0:
                bar.update(task, completed=n)
    elapsed = time.perf_counter() - started
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base if trace else process.memory_info().rss - rss_before
    tracemalloc.stop()
    assert len(book.balances) == balances and not book.reservations
    return held, elapsed


def _rss(balances: int) -> tuple[int, float]:
    return build(balances, trace=False)


def measure(balances: int, *, progress: bool = True) -> dict[str, object]:
    heap, _ = build(balances, trace=True, progress=progress)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        rss, elapsed = pool.apply(_rss, (balances,))
    return {
        "scenario": "memory",
        "balances": balances,
        "heap_bytes_per_balance": round(heap / balances, 1),
        "rss_bytes_per_balance": round(rss / balances, 1),
        "build_seconds": round(elapsed, 1),
        "python": sys.version.split()[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n")[0])
    parser.add_argument("--balances", type=int, default=1_000_000)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.balances, progress=not args.no_progress)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
