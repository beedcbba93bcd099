"""Replay after a crash mid-flush recovers the last committed state (real SQLite adapter).

Each batch below is appended synchronously and then awaited, so every flush commits exactly
one batch: a recovered journal must hold a whole number of batches, contiguous, with a valid
hash chain (load() checks both), and at least everything that was reported durable.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from journal import SqliteJournal, StoredRecord
from ledger.records import Posted

BATCH_ROWS = 37
WAL_HEADER_BYTES = 32
WAL_FRAME_HEADER_BYTES = 24
CHILD_WAIT_S_MAX = 20.0  # kill a child that stalls, so a broken run fails instead of hanging

# Appends batches forever, printing each batch's last seq once durable() has returned for it.
CHILD = """
import asyncio, sys
from journal import SqliteJournal
from ledger.records import Posted

async def main(path, batch_rows):
    journal = SqliteJournal(path)
    for _ in journal.load().records:
        pass
    seq = journal.last_seq
    while True:
        for _ in range(batch_rows):
            seq = journal.append(Posted(f"pay_{seq + 1}", "bal_a", seq + 1, -(seq + 1), seq + 1))
        await journal.durable(seq)
        print(seq, flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def record(seq: int) -> Posted:
    return Posted(f"pay_{seq}", "bal_a", seq, -seq, seq)


def recover(path: Path) -> list[StoredRecord]:
    """Replay as a restarted process would; raises JournalCorrupt on a hole or a bad hash."""
    return list(SqliteJournal(path).load().records)


def assert_whole_batches(records: list[StoredRecord], batch_rows: int) -> None:
    assert [s.seq for s in records] == list(range(1, len(records) + 1))
    assert [s.record for s in records] == [record(s.seq) for s in records]
    assert len(records) % batch_rows == 0, f"{len(records)} records: a batch was committed in part"


def run_child_until_killed(path: Path, durable_lines: int, kill_delay_s: float = 0.0) -> int:
    """Start a writer, wait for `durable_lines` acknowledgements, let it run `kill_delay_s`
    longer (so the kill lands at varying points of a flush), SIGKILL it; returns the highest
    seq it reported durable."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(BATCH_ROWS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(CHILD_WAIT_S_MAX, child.kill)
    watchdog.start()
    try:
        assert child.stdout is not None
        for _ in range(durable_lines):
            line = child.stdout.readline()
            assert line, f"writer stopped early: {child.stderr.read() if child.stderr else ''}"
        time.sleep(kill_delay_s)
        child.send_signal(signal.SIGKILL)
        rest, errors = child.communicate()
    finally:
        watchdog.cancel()
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL, errors
    # Lines the child printed before dying were acknowledged too: take the last of all of them.
    reported = [int(n) for n in (line, *rest.split())]
    assert reported == sorted(reported)
    return reported[-1]


def test_sigkill_mid_flush_recovers_everything_reported_durable(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    last_recovered = 0
    for crash, kill_delay_s in enumerate([0.0, 0.003, 0.02]):  # crash, restart on the same file, ...
        reported = run_child_until_killed(path, durable_lines=4 + crash, kill_delay_s=kill_delay_s)
        records = recover(path)
        assert_whole_batches(records, BATCH_ROWS)
        assert len(records) >= reported, f"crash {crash}: reported {reported} durable, recovered {len(records)}"
        assert len(records) > last_recovered  # the restarted writer continued the same journal
        last_recovered = len(records)


async def test_recovered_journal_accepts_appends_after_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    reported = run_child_until_killed(path, durable_lines=3)
    journal = SqliteJournal(path)
    recovered = list(journal.load().records)
    assert len(recovered) >= reported
    seq = journal.append(record(len(recovered) + 1))
    assert seq == len(recovered) + 1
    await journal.close()
    assert [s.seq for s in recover(path)] == list(range(1, seq + 1))


# -- a torn tail in the write-ahead log ---------------------------------------------------------
class WalCopy:
    """A journal with a few committed batches, still open (so its WAL is not checkpointed),
    and the WAL size after each batch: the last batch's frames lie between the last two."""

    def __init__(self, source: Path, wal_sizes: list[int]) -> None:
        self.source = source
        self.wal_sizes = wal_sizes
        with open(f"{source}-wal", "rb") as f:
            header = f.read(WAL_HEADER_BYTES)
        self.frame_bytes = WAL_FRAME_HEADER_BYTES + int.from_bytes(header[8:12], "big")

    def torn(self, target: Path, wal_bytes: int, *, garbage_from: int | None = None) -> Path:
        """Copy the database and the first `wal_bytes` of its WAL, optionally overwriting the
        WAL from `garbage_from` on; no -shm, so opening the copy rebuilds it from the WAL."""
        shutil.copyfile(self.source, target)
        with open(f"{self.source}-wal", "rb") as f:
            wal = bytearray(f.read(wal_bytes))
        if garbage_from is not None:
            wal[garbage_from:] = b"\xa5" * (len(wal) - garbage_from)
        Path(f"{target}-wal").write_bytes(wal)
        return target


BATCHES = 4


@pytest.fixture
async def wal_copy(tmp_path: Path) -> AsyncIterator[WalCopy]:
    source = tmp_path / "source.sqlite"
    journal = SqliteJournal(source)
    assert list(journal.load().records) == []
    wal_sizes = []
    for _ in range(BATCHES):
        for _ in range(BATCH_ROWS):
            journal.append(record(journal.last_seq + 1))
        await journal.durable()
        wal_sizes.append(os.path.getsize(f"{source}-wal"))
    copy = WalCopy(source, wal_sizes)
    # The fixture's own preconditions: no checkpoint reset the WAL, and the last batch spans a frame.
    assert wal_sizes == sorted(set(wal_sizes))
    assert wal_sizes[-1] - wal_sizes[-2] >= copy.frame_bytes
    assert (wal_sizes[-1] - WAL_HEADER_BYTES) % copy.frame_bytes == 0
    yield copy
    await journal.close()


# Where the WAL copy ends, relative to the last batch's frames [start, end).
TORN_OFFSETS = {
    "inside the first frame header": lambda start, end, frame: start + 7,
    "inside the first page": lambda start, end, frame: start + WAL_FRAME_HEADER_BYTES + 1000,
    "after a whole frame, before the commit frame": lambda start, end, frame: min(start + frame, end - frame + 1),
    "inside the commit frame": lambda start, end, frame: end - frame // 2,
    "one byte short": lambda start, end, frame: end - 1,
}


@pytest.mark.parametrize("where", list(TORN_OFFSETS))
async def test_truncated_wal_loses_only_the_torn_batch(wal_copy: WalCopy, tmp_path: Path, where: str) -> None:
    start, end = wal_copy.wal_sizes[-2], wal_copy.wal_sizes[-1]
    cut = TORN_OFFSETS[where](start, end, wal_copy.frame_bytes)
    assert start < cut < end
    records = recover(wal_copy.torn(tmp_path / "torn.sqlite", cut))
    assert_whole_batches(records, BATCH_ROWS)
    assert len(records) == (BATCHES - 1) * BATCH_ROWS  # every earlier batch, nothing of the torn one


async def test_garbage_in_the_last_frames_loses_only_that_batch(wal_copy: WalCopy, tmp_path: Path) -> None:
    start, end = wal_copy.wal_sizes[-2], wal_copy.wal_sizes[-1]
    torn = wal_copy.torn(tmp_path / "torn.sqlite", end, garbage_from=start + WAL_FRAME_HEADER_BYTES + 100)
    records = recover(torn)
    assert_whole_batches(records, BATCH_ROWS)
    assert len(records) == (BATCHES - 1) * BATCH_ROWS


@pytest.mark.parametrize("batches_kept", [BATCHES - 1, BATCHES])
async def test_wal_cut_on_a_commit_boundary_keeps_those_batches(
    wal_copy: WalCopy, tmp_path: Path, batches_kept: int
) -> None:
    copy = wal_copy.torn(tmp_path / "cut.sqlite", wal_copy.wal_sizes[batches_kept - 1])
    records = recover(copy)
    assert_whole_batches(records, BATCH_ROWS)
    assert len(records) == batches_kept * BATCH_ROWS


async def test_a_torn_journal_continues_its_chain_after_recovery(wal_copy: WalCopy, tmp_path: Path) -> None:
    torn = wal_copy.torn(tmp_path / "torn.sqlite", wal_copy.wal_sizes[-1] - 1)
    journal = SqliteJournal(torn)
    kept = len(list(journal.load().records))
    assert kept == (BATCHES - 1) * BATCH_ROWS
    # the seqs of the lost batch are reused by new records, hashed from the last kept one
    for _ in range(5):
        journal.append(record(journal.last_seq + 1))
    await journal.close()
    assert [s.seq for s in recover(torn)] == list(range(1, kept + 6))
