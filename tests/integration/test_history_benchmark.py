"""The history benchmark stores what it reports on, through the journal's real index writer."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

from benchmarks.history import measure


async def test_the_history_benchmark_stores_every_row_it_reports(tmp_path: Path) -> None:
    report = await measure(payments=1_000, per_write=250, per_frame=50, balances=20, data_dir=tmp_path)
    assert report["payments"] == 1_000
    # all payments, by status, by each balance, by key; two event tags
    assert report["tags_per_payment"] == 7.0
    assert isinstance(report["store_us_per_payment"], float) and report["store_us_per_payment"] > 0
    with contextlib.closing(sqlite3.connect(tmp_path / "bench.sqlite-history")) as db:
        groups = db.execute("SELECT COUNT(*) FROM tag_groups").fetchone()[0]
        assert report["rows_per_payment"] == round(groups / 1_000, 2)
        # a frame's payments share their "pay" groups: fewer rows than payments, none lost
        pay = [json.loads(text) for (text,) in db.execute("SELECT entries FROM tag_groups WHERE tag = 'pay'")]
        assert len(pay) < 1_000 and sum(len(entries) for entries in pay) == 1_000
        assert db.execute("SELECT seq FROM progress").fetchone() == (1_000,)
