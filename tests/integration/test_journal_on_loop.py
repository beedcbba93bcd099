"""Commits on the event loop (journal.sqlite `commit_on_loop`): SQLite's own WAL
checkpoints are off for that connection, so the file must be checkpointed by the writer
thread instead; otherwise the WAL would grow without bound and every frame would live only
in it. Real SQLite files."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

import journal.sqlite
from journal import SqliteJournal
from ledger.records import Posted


def main_file_frames(path: Path) -> int:
    """Frames copied into the database file itself (a copy of it alone, without its WAL)."""
    copy = path.with_name("alone.sqlite")
    copy.write_bytes(path.read_bytes())
    with sqlite3.connect(copy) as conn:
        return conn.execute("SELECT count(*) FROM frames").fetchone()[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("every", [4, 10_000])
async def test_commits_on_the_loop_are_checkpointed_by_the_writer_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, every: int
) -> None:
    monkeypatch.setattr(journal.sqlite, "CHECKPOINT_EVERY", every)
    path = tmp_path / "j.sqlite"
    j = SqliteJournal(path, commit_on_loop=True)
    assert list(j.load().records) == []
    for n in range(1, 41):
        j.append(Posted(f"pay_{n}", "bal_a", n, -n, n))
        await j.durable()  # one commit each
    for _ in range(100):  # the checkpoint runs on the writer thread, in the background
        if every > 40 or main_file_frames(path) >= 36:
            break
        await asyncio.sleep(0.02)
    copied = main_file_frames(path)
    await j.close()
    if every > 40:
        assert copied == 0  # no checkpoint due: every frame is still only in the WAL
    else:
        assert copied >= 36  # checkpointed at least up to the 36th commit
    reopened = SqliteJournal(path)
    assert [s.record.payment_id for s in reopened.load().records] == [f"pay_{n}" for n in range(1, 41)]
    await reopened.close()
