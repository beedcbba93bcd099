"""History index cost: CPU per payment to build and to store its index groups, one JSON line.

    python -m benchmarks.history --payments 200000 --per-write 5000 --per-frame 100

Builds the index groups of `--payments` decided payments (keyed, between `--balances`
balances, with their events, as a coordinator journals them) in frames of `--per-frame`,
and stores them through the SQLite journal's own index writer, `--per-write` payments per
transaction; reports the CPU (user + system, this process) per payment of each step, and
the rows stored per payment. Rows keyed by balance land all over the index's B-trees, so
the cost per row falls as batches grow: this is why the journal holds index groups in
memory and stores them in large batches.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from journal.base import Frame, HistoryGroup, history_groups
from journal.sqlite import SqliteJournal
from ledger.ids import make_id
from ledger.records import Decided, PaymentRecord, Record, RecordCodec

STORED_TABLES = ("tag_runs", "key_entries")  # what the index stores (journal.sqlite)


async def measure(
    payments: int, per_write: int, per_frame: int, balances: int, data_dir: Path, per_s: int = 10_000
) -> dict[str, object]:
    journal = SqliteJournal(data_dir / "bench.sqlite")
    list(journal.load().records)
    codec, rng = RecordCodec(), random.Random(1)
    ids = [make_id("bal", 1_700_000_000_000, rng.randbytes(10)) for _ in range(balances)]
    start_ms, seq, cpu_s, build_s, groups_stored, entries = 1_764_000_000_000, 0, 0.0, 0.0, 0, 0
    for _ in range(payments // per_write):
        groups: list[HistoryGroup] = []
        for _ in range(per_write // per_frame):  # as a coordinator's frames: keyed payments, events
            records: list[Record] = []
            for _ in range(per_frame):
                now_ms = start_ms + seq * 1_000 // per_s  # ids as made at `per_s` payments a second
                balance_from, balance_to = rng.sample(ids, 2)
                payment_id = make_id("pay", now_ms, rng.randbytes(10))
                key = f"admin:{rng.randbytes(8).hex()}"
                payment = PaymentRecord(
                    payment_id,
                    balance_from,
                    balance_to,
                    100,
                    "USD",
                    "success",
                    None,
                    now_ms,
                    now_ms,
                    idempotency_key=key,
                )
                records.append(Decided(payment))
            body, lens = codec.encode_frame(records)
            started = time.process_time()
            groups += history_groups(Frame(seq + 1, seq + len(records), body, b"", tuple(lens)), records, "c00")
            build_s += time.process_time() - started
            seq += len(records)
        started = time.process_time()  # the writer thread's CPU counts too
        await journal._write_history(groups, seq)
        cpu_s += time.process_time() - started
        groups_stored += len(groups)
        entries += sum(len(g.entries) for g in groups)
    await journal.close()
    done = payments // per_write * per_write
    with contextlib.closing(sqlite3.connect(journal.history_path)) as db:
        rows_stored = sum(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in STORED_TABLES)
    return {
        "scenario": "history",
        "payments": done,
        "per_write": per_write,
        "per_frame": per_frame,
        "balances": balances,
        "per_s": per_s,
        "tags_per_payment": round(entries / done, 1),
        "groups_per_payment": round(groups_stored / done, 2),
        "rows_per_payment": round(rows_stored / done, 3),
        "build_us_per_payment": round(build_s / done * 1e6, 1),
        "store_us_per_payment": round(cpu_s / done * 1e6, 1),
        "index_mb": round(os.path.getsize(journal.history_path) / 2**20, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.history", description=__doc__.split("\n")[0])
    parser.add_argument("--payments", type=int, default=200_000)
    parser.add_argument("--per-write", type=int, default=5_000)
    parser.add_argument("--per-frame", type=int, default=100, help="records per journal frame (one flush)")
    parser.add_argument("--balances", type=int, default=1_000)
    parser.add_argument("--per-s", type=int, default=10_000, help="the rate the payments' ids are made at")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rayledger-history-") as temp_dir:
        measured = measure(args.payments, args.per_write, args.per_frame, args.balances, Path(temp_dir), args.per_s)
        report = asyncio.run(measured)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
