"""The history benchmark stores what it reports on, through the journal's real index writer."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from benchmarks.history import measure


async def test_the_history_benchmark_stores_every_row_it_reports(tmp_path: Path) -> None:
    report = await measure(payments=1_000, per_write=250, balances=20, data_dir=tmp_path)
    assert report["payments"] == 1_000
    assert report["rows_per_payment"] == 4.0  # all payments, by status, by each balance
    assert isinstance(report["cpu_us_per_payment"], float) and report["cpu_us_per_payment"] > 0
    with contextlib.closing(sqlite3.connect(tmp_path / "bench.sqlite-history")) as db:
        assert db.execute("SELECT COUNT(*) FROM history").fetchone() == (4_000,)
        assert db.execute("SELECT COUNT(*) FROM history WHERE tag = 'pay'").fetchone() == (1_000,)
        assert db.execute("SELECT seq FROM progress").fetchone() == (1_000,)
