"""The history index of a journal file, stored by a process of its own.

`python -m journal.indexer <journal file> <busy timeout s>`, started by the file's owner
(`SqliteFile.index_elsewhere`), which writes one JSON line per journal part to index on
this process's stdin (`{"part": 3, "event_source": "c00", "rows_per_write": 8000,
"write_after_s": 5.0}`, the journal's own settings) and closes it to stop it.

Building a frame's index groups and storing them was about a third of a coordinator's
CPU, on the process whose single core (its event loop and the GIL) limits the payment
path. Here that work has a core of its own: the owner writes frames only, keeps the ones
not stored yet in memory for read-your-writes, and reads `progress` now and then to forget
them. Everything is read back from the committed frames, so nothing is lost if this process
dies: the owner stores the rows itself once it holds too many, and on close.

It stores a part once `rows_per_write` positions are waiting, or once the oldest has waited
`write_after_s`, in transactions of that many positions (a large batch lands
in key order, visiting each B-tree page once). A part whose frames do not check out is
reported and left alone: the owner's own catch-up reports it to queries.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import sys
import threading
import time
from pathlib import Path

import msgspec

from journal.base import HISTORY_CATCH_UP_FRAMES, HistoryGroup, JournalCorrupt, checked_records, history_groups
from journal.sqlite import FrameRow, _connect_history, _frame, _run, store_history
from ledger.records import RecordCodec

log = logging.getLogger("rayledger.indexer")
POLL_S = 0.25  # how often the parts are looked at


class Part(msgspec.Struct):
    """One journal of the file (as its owner orders it), and how long its unstored frames
    have waited."""

    part: int
    event_source: str | None
    rows_per_write: int
    write_after_s: float
    waiting_since: float | None = None  # (kept here, not ordered)
    broken: bool = False


class Indexer:
    def __init__(self, path: Path, busy_timeout_s: float) -> None:
        self.codec = RecordCodec()
        self.frames = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
        self.frames.execute("PRAGMA query_only=1")
        self.history = _connect_history(Path(f"{path}-history"), busy_timeout_s)
        self.parts: dict[int, Part] = {}

    def step(self, now: float) -> None:
        for part in self.parts.values():
            if not part.broken:
                self._part_step(part, now)

    def _part_step(self, part: Part, now: float) -> None:
        found = self.frames.execute(  # by the primary key: MAX(last_seq) would read every frame
            "SELECT last_seq FROM frames WHERE part = ? ORDER BY first_seq DESC LIMIT 1", (part.part,)
        ).fetchone()
        last = found[0] if found else 0
        stored = self._progress(part.part)
        if last <= stored:
            part.waiting_since = None
            return
        if part.waiting_since is None:
            part.waiting_since = now
        if last - stored < part.rows_per_write and now < part.waiting_since + part.write_after_s:
            return
        try:
            while stored < last:
                stored = self._store(part, stored)
        except JournalCorrupt as exc:
            part.broken = True
            log.error("history_corrupt part=%s: %s", part.part, exc)
        part.waiting_since = None

    def _progress(self, part: int) -> int:
        row = self.history.execute("SELECT seq FROM progress WHERE part = ?", (part,)).fetchone()
        return int(row[0]) if row else 0

    def _store(self, part: Part, stored: int) -> int:
        """Index about `rows_per_write` positions after `stored`, in one transaction."""
        groups: list[HistoryGroup] = []
        through = stored
        while through - stored < part.rows_per_write:
            rows: list[FrameRow] = self.frames.execute(
                "SELECT first_seq, last_seq, body, hash, lens FROM frames"
                " WHERE part = ? AND last_seq > ? ORDER BY first_seq LIMIT ?",
                (part.part, through, HISTORY_CATCH_UP_FRAMES),
            ).fetchall()
            if not rows:
                break
            for row in rows:
                frame = _frame(row)
                # The chain was checked as the frames were written; the shape is checked here.
                groups += history_groups(frame, checked_records(self.codec, frame, through, None), part.event_source)
                through = frame.last_seq

        def work(db: sqlite3.Connection) -> None:
            store_history(db, part.part, groups, through)

        _run(self.history, work)
        return through


def _read_orders(orders: queue.SimpleQueue[Part | None]) -> None:
    for line in sys.stdin:
        orders.put(msgspec.json.decode(line, type=Part))
    orders.put(None)  # the owner closed the pipe (or is gone)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    indexer = Indexer(Path(argv[1]), float(argv[2]))
    orders: queue.SimpleQueue[Part | None] = queue.SimpleQueue()
    threading.Thread(target=_read_orders, args=(orders,), daemon=True).start()
    while True:
        try:
            order = orders.get(timeout=POLL_S)
        except queue.Empty:
            pass
        else:
            if order is None:
                return 0
            indexer.parts[order.part] = order
        try:
            indexer.step(time.monotonic())
        except sqlite3.OperationalError as exc:  # locked, busy: the next poll tries again
            log.warning("history_not_stored: %s", exc)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
