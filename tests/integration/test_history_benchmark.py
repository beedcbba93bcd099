"""The history benchmark stores what it reports on, through the journal's real index writer."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import msgspec

from benchmarks.history import measure


async def test_the_history_benchmark_stores_every_row_it_reports(tmp_path: Path) -> None:
    report = await measure(payments=1_000, per_write=250, per_frame=50, balances=20, data_dir=tmp_path)
    assert report["payments"] == 1_000
    # all payments, by status, by each balance, by key; two event tags
    assert report["tags_per_payment"] == 7.0
    assert isinstance(report["store_us_per_payment"], float) and report["store_us_per_payment"] > 0
    with contextlib.closing(sqlite3.connect(tmp_path / "bench.sqlite-history")) as db:
        runs = db.execute("SELECT COUNT(*) FROM tag_runs").fetchone()[0]
        keys = db.execute("SELECT COUNT(*) FROM key_entries").fetchone()[0]
        assert report["rows_per_payment"] == round((runs + keys) / 1_000, 3)
        assert keys == 1_000  # a key's record each
        # a store's payments share their rows: far fewer rows than payments, none lost
        pay = [msgspec.msgpack.decode(blob) for (blob,) in db.execute("SELECT entries FROM tag_runs WHERE tag = 'pay'")]
        assert len(pay) < 100
        assert sorted(entry[1] for row in pay for _, entries in row for entry in entries) == list(range(1, 1_001))
        assert db.execute("SELECT seq FROM progress").fetchone() == (1_000,)
