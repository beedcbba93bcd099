"""SQLite journal: one file per shard, coordinator or registry, and its history index.

WAL with synchronous=FULL: a commit returns only after the WAL is fsynced, and a torn
write at the tail is discarded by SQLite's frame checksums on the next open, so replay
always sees a prefix of committed frames. A flush is one frame: one row.

A file holds one or more journals, told apart by `part`: a shard keeps each of its
partitions as its own journal (its own sequence, hash chain and snapshots, so a partition
can move to another shard whole) in the shard's one file. The writes of every journal of a
file that arrive while a commit is out go together in the next transaction, so a batch that
touches eight partitions of a shard costs one fsync, not eight (measured: 8 files written in
parallel, p50 2.35 ms; one file, 0.57 ms).

Loading uses the synchronous sqlite3 module because actors rebuild state inside their
synchronous `__init__`. Writes use a plain sqlite3 connection owned by one dedicated
thread per file: a whole commit is one function run there, so it costs one thread hand-off
(aiosqlite's model, one hand-off per statement, measured ~3x the flush latency). With
`commit_on_loop` the commit runs on the event loop instead, blocking it for the commit
itself (0.3-0.7 ms here): on a busy ingress the hand-off to the writer thread and back cost
more than that, 3-5 ms of waiting for the two wake-ups (measured: a coordinator's decision
went from 5-6 ms to 1.7-2.5 ms to durable, +10-25% payments/s). The price is that a
stalled disk stalls the loop too, reads included. So that nothing else does: the loop
never waits on another process's lock for long (the busy timeout, at most
LOOP_BUSY_TIMEOUT_S; then the journal is unwritable and its flush retries with backoff),
and WAL checkpoints, which SQLite would run inside a commit, run on the otherwise idle
writer thread every CHECKPOINT_EVERY commits.

The history index lives in a second file, `<file>-history`, written by its own thread,
or with `history_elsewhere` by a process of its own (`journal.indexer`, started here), so
indexing never takes the journal's write lock or delays a commit. It is derived data:
synchronous=NORMAL (a power cut may lose its last transactions, never its consistency),
caught up from the journal's frames on the next open, and rebuilt whole if deleted. History
queries use a read-only aiosqlite connection on the journal with the index attached, so
under WAL they only ever see committed rows.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import operator
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite
import msgspec

from journal.base import (
    GENESIS_HASH,
    Entry,
    Frame,
    HistoryGroup,
    HistoryQuery,
    HistoryRow,
    Journal,
    _row_seq,
    bucket_of,
)
from journal.private import private_dir, private_file
from ledger.records import RECORD_TAGS_VERSION

T = TypeVar("T")
# PRAGMA user_version; 1 stored a row per record (rayledger 0.1), 2 one journal per file
# (rayledger 0.2); 3 keys every row by its journal's `part`.
FORMAT = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS frames (
    part      INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq  INTEGER NOT NULL,
    body      BLOB NOT NULL,
    hash      BLOB NOT NULL,
    lens      BLOB NOT NULL,
    PRIMARY KEY (part, first_seq)
);
CREATE TABLE IF NOT EXISTS snapshots (
    part INTEGER NOT NULL,
    seq  INTEGER NOT NULL,
    hash BLOB NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (part, seq)
);
"""

HISTORY_SCHEMA = """
CREATE TABLE IF NOT EXISTS tag_runs (
    part    INTEGER NOT NULL,
    tag     TEXT NOT NULL,
    bucket  TEXT NOT NULL,
    run     INTEGER NOT NULL,
    chunk   INTEGER NOT NULL,
    entries BLOB NOT NULL,
    PRIMARY KEY (part, tag, bucket, run, chunk)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tag_runs_by_run ON tag_runs (part, tag, run);
CREATE TABLE IF NOT EXISTS key_entries (
    part   INTEGER NOT NULL,
    hash_a INTEGER NOT NULL,
    hash_b INTEGER NOT NULL,
    seq    INTEGER NOT NULL,
    id     TEXT NOT NULL,
    frame  INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    length INTEGER NOT NULL,
    PRIMARY KEY (part, hash_a, hash_b, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS progress (
    part INTEGER PRIMARY KEY,
    seq  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tagging (version INTEGER NOT NULL);
"""
# The stored index is written a run at a time: every frame one store covers (up to
# HISTORY_ROWS_PER_WRITE positions) goes in one transaction, and a tag's entries in one
# bucket within it are one row (`run`: the store's first position; `chunk`: its pieces of
# RUN_CHUNK entries), not a row per frame: a balance's payments of a 20,000-position
# store are a couple of rows instead of ~40 (B-tree searches, a second index, pages
# written whole). Measured with `python -m benchmarks.history`: keyed payments in frames
# of 100, 34 us per payment stored as a row per frame, 19 as runs; unkeyed in frames of
# 480, 15.6 and 8-9. Entries are MessagePack, [[frame, [[id, seq, offset, length], ...]],
# ...], frames ascending: as JSON text SQLite parsed them all again (13 us against 9, and
# a quarter more bytes).
#
# An idempotency key tags one record or a few, so a key's rows cannot merge: they go to
# `key_entries`, a narrow table keyed by a 128-bit hash of the tag (as unlikely to collide
# as two ids); as rows of `tag_runs` they cost about twice as much (a probe: 24 us per
# keyed payment against 13).
RUNS_INSERT = (
    "INSERT OR IGNORE INTO tag_runs SELECT ?1, json_extract(value, '$[0]'), json_extract(value, '$[1]'),"
    " json_extract(value, '$[2]'), json_extract(value, '$[3]'),"
    " substr(?2, json_extract(value, '$[4]'), json_extract(value, '$[5]')) FROM json_each(?3) ORDER BY 2, 3, 4, 5"
)
KEYS_INSERT = (
    "INSERT OR IGNORE INTO key_entries SELECT ?, json_extract(value, '$[0]'), json_extract(value, '$[1]'),"
    " json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'),"
    " json_extract(value, '$[5]'), json_extract(value, '$[6]') FROM json_each(?) ORDER BY 2, 3, 4"
)
RUN_CHUNK = 1_000  # entries per row at most: a hot balance's bucket is read a row at a time
KEY_TAG = "k:"
# Stored bucket lengths by tag kind (`bucket_of` cuts ids to 13 characters: "pay_" and ~32
# ms of time). A balance's tags take ~1 s of ids per bucket, so that its entries of a run
# share a row; a page by id then reads at most a second of one balance's payments.
WIDE_BUCKET_LEN = 12
WIDE_BUCKET_TAGS = ("b:", "tb:", "po:")
# The records a query chose, cut out of their frames in one statement: [[frame, offset, length], ...].
# CROSS JOIN keeps the list outside, each frame found by its key: with a plain JOIN SQLite
# chose to walk every frame of the journal and the list inside it, so that a page of 100
# records took ~20 ms at 200 frames and grew with the journal (the same for ALSO_RUNS,
# over every row of the second tag).
CUT_RECORDS = (
    "SELECT j.key, substr(f.body, json_extract(j.value, '$[1]') + 1, json_extract(j.value, '$[2]'))"
    " FROM json_each(?) j CROSS JOIN main.frames f ON f.part = ? AND f.first_seq = json_extract(j.value, '$[0]')"
)
# The runs of a second tag in given (bucket, run)s, in one statement: [[bucket, run], ...].
ALSO_RUNS = (
    "SELECT g.entries FROM json_each(?) j CROSS JOIN hist.tag_runs g"
    " ON g.part = ? AND g.tag = ? AND g.bucket = json_extract(j.value, '$[0]')"
    " AND g.run = json_extract(j.value, '$[1]')"
)
# Progress only moves forward: the owner (on close, or when the indexer process falls
# behind) and the indexer process may both store the same frames: each store skips the
# frames that progress already covers, in the same transaction.
PROGRESS_UPSERT = (
    "INSERT INTO progress (part, seq) VALUES (?, ?) ON CONFLICT (part) DO UPDATE SET seq = max(seq, excluded.seq)"
)
GROUPS_FETCHED = 64  # rows of a query read per hand-off to the reader's thread
_run_entries = msgspec.msgpack.Decoder(list[tuple[int, list[tuple[str, int, int, int]]]])
_encode_entries = msgspec.msgpack.encode

INDEXER_RESTART_S = 5.0  # an indexer process that died is started again after this, at the soonest
INDEXER_STOP_S = 5.0  # what it is storing when told to stop may finish; then it is killed
LOOP_BUSY_TIMEOUT_S = 0.25  # at most: the configured busy timeout when shorter
CHECKPOINT_EVERY = 256  # commits; SQLite's own default (1,000 pages) is about as often
HISTORY_CACHE_KIB = 16 * 1024  # a batch of rows by balance touches ~2 pages per balance: keep them cached


class JournalFormatError(Exception):
    """The file was written in a journal format this version does not read."""


def _data_dir_of(path: Path) -> Path:
    """The data directory a journal file is in (the registry's is at its top)."""
    return path.parent.parent if path.parent.name in ("shards", "partitions", "coordinators") else path.parent


def _connect_sync(path: Path, timeout_s: float = 5.0) -> sqlite3.Connection:
    private_file(path)
    conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None)  # explicit BEGIN/COMMIT
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'records'").fetchone():
            raise JournalFormatError(
                f"{path} is in journal format 1 (rayledger 0.1, one row per record); this version reads"
                f" format {FORMAT}: run `rayledger migrate --data-dir {_data_dir_of(path)}` to convert it"
            )
        columns = [row[1] for row in conn.execute("PRAGMA table_info(frames)")]
        if columns and "part" not in columns:
            raise JournalFormatError(
                f"{path} is in journal format 2 (rayledger 0.2, a file per partition); this version reads"
                f" format {FORMAT}: run `rayledger migrate --data-dir {_data_dir_of(path)}` to convert it"
            )
        conn.executescript(SCHEMA)
        conn.execute(f"PRAGMA user_version = {FORMAT}")
    except BaseException:
        conn.close()
        raise
    return conn


def _connect_history(path: Path, timeout_s: float) -> sqlite3.Connection:
    private_file(path)
    conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA cache_size=-{HISTORY_CACHE_KIB}")
        older = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name IN ('history', 'tag_groups')"
        ).fetchone()
        if older:
            # A row per record and tag (rayledger 0.7 and before; the oldest have no
            # `tagging`), or per frame and tag (0.7): derived data, made again as
            # runs from the journal.
            conn.executescript(
                "BEGIN IMMEDIATE; DROP TABLE IF EXISTS history; DROP TABLE IF EXISTS tag_groups;"
                " DROP TABLE IF EXISTS progress; DROP TABLE IF EXISTS tagging; COMMIT;"
            )
        conn.executescript(HISTORY_SCHEMA)
        # A new index is stamped with the tagging it is made under; one from before stamps
        # existed has progress and no stamp, and is rebuilt when its journal opens.
        conn.execute(
            "INSERT INTO tagging SELECT ? WHERE NOT EXISTS (SELECT 1 FROM tagging)"
            " AND NOT EXISTS (SELECT 1 FROM progress)",
            (RECORD_TAGS_VERSION,),
        )
    except BaseException:
        conn.close()
        raise
    return conn


FrameRow = tuple[int, int, bytes, bytes, bytes]  # first_seq, last_seq, body, hash, lens


def _frame(row: FrameRow) -> Frame:
    first_seq, last_seq, body, hash_, lens = row
    return Frame(first_seq, last_seq, body, hash_, tuple(msgspec.msgpack.decode(lens)))


def _run(db: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """`work` in one immediate transaction; rolled back if it raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        result = work(db)
        db.execute("COMMIT")
        return result
    except BaseException:
        if db.in_transaction:  # SQLite may have rolled back already (disk full, I/O error)
            db.execute("ROLLBACK")
        raise


Work = Callable[[sqlite3.Connection], None]


class SqliteFile:
    """One SQLite file and its history index, shared by the journals stored in it: one
    writer thread and connection (commits), one history thread, one reader connection.
    Writes that arrive while a commit is out are the next commit, whichever journal made
    them (group commit across the file's journals)."""

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 5_000, commit_on_loop: bool = False) -> None:
        self.path = Path(path)
        self.commit_on_loop = commit_on_loop
        self.history_path = Path(f"{self.path}-history")
        self.busy_timeout_s = busy_timeout_ms / 1000
        private_dir(self.path.parent)
        self._writer: sqlite3.Connection | None = None  # used only by `run` (the writer thread, or the loop)
        self._checkpointer: sqlite3.Connection | None = None  # on the writer thread, with commit_on_loop
        self._commits_since_checkpoint = 0
        self._checkpointing = False
        self._writer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"journal-{self.path.stem}")
        self._history: sqlite3.Connection | None = None  # used only on the history thread
        self._history_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"history-{self.path.stem}")
        self._queued: list[tuple[Work, asyncio.Future[None]]] = []
        self._committing = False
        self._users = 0  # journals open on this file
        self._threads_shut = False
        self._reader: aiosqlite.Connection | None = None
        self._indexer: subprocess.Popen[str] | None = None  # journal.indexer, for the parts in _elsewhere
        self._indexer_started = -INDEXER_RESTART_S
        self._elsewhere: dict[int, dict[str, Any]] = {}  # part -> its order to the indexer
        self._open_lock: asyncio.Lock | None = None  # one reader connection, even on concurrent first use

    def connect(self) -> sqlite3.Connection:
        return _connect_sync(self.path, self.busy_timeout_s)

    # -- commits ------------------------------------------------------------------------
    async def write(self, work: Work) -> None:
        """Run `work` in a transaction with whatever else is queued; durable on return."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queued.append((work, done))
        if not self._committing:
            self._committing = True
            if self._users > 1:
                # Next turn of the loop: the other journals woken by the same batch queue theirs first.
                loop.call_soon(self._commit_queued)
            else:
                self._commit_queued()
        await done

    def _commit_queued(self) -> None:
        batch, self._queued = self._queued, []
        if not batch:
            self._committing = False
            return
        works = [work for work, _ in batch]
        loop = asyncio.get_running_loop()

        def run() -> None:
            error: BaseException | None = None
            try:
                if self._writer is None:
                    self._writer = _connect_sync(self.path, self.busy_timeout_s)
                    if self.commit_on_loop:
                        busy_ms = int(min(self.busy_timeout_s, LOOP_BUSY_TIMEOUT_S) * 1000)
                        self._writer.execute(f"PRAGMA busy_timeout = {busy_ms}")
                        self._writer.execute("PRAGMA wal_autocheckpoint = 0")
                _run(self._writer, lambda db: [work(db) for work in works])
            except sqlite3.Error as exc:
                error = exc
                if self._writer is not None and self._writer.in_transaction:
                    self._writer.close()  # a failed rollback: a fresh connection for the retry
                    self._writer = None
            except BaseException as exc:  # handed to the waiters, whatever it is
                error = exc
            if self.commit_on_loop:
                loop.call_soon(self._committed, batch, error)  # not reentrant: what queues meanwhile waits a turn
            else:
                # Straight back to the loop: run_in_executor's future, then its done callback,
                # would each take one more turn of a busy loop before the waiters learn it.
                loop.call_soon_threadsafe(self._committed, batch, error)

        if self.commit_on_loop:
            run()
            self._commits_since_checkpoint += 1
            due = self._commits_since_checkpoint >= CHECKPOINT_EVERY
            if due and not self._checkpointing and not self._threads_shut:
                self._commits_since_checkpoint = 0
                self._checkpointing = True
                self._writer_thread.submit(self._checkpoint)
        else:
            self._writer_thread.submit(run)

    def _checkpoint(self) -> None:
        """Copy the WAL back into the file without blocking the writer (PASSIVE)."""
        try:
            if self._checkpointer is None:  # plain: _connect_sync would write the header, taking the write lock
                self._checkpointer = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
            self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass  # the next one catches up; the WAL only grows meanwhile
        finally:
            self._checkpointing = False

    def _committed(self, batch: list[tuple[Work, asyncio.Future[None]]], error: BaseException | None) -> None:
        for _, done in batch:
            if not done.done():
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(error)
        self._commit_queued()  # what queued meanwhile, at once

    # -- the history index ------------------------------------------------------------------
    async def on_history(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            if self._history is None:
                self._history = _connect_history(self.history_path, self.busy_timeout_s)
            try:
                return _run(self._history, work)
            except sqlite3.Error:
                if self._history.in_transaction:
                    self._history.close()
                    self._history = None
                raise

        return await asyncio.get_running_loop().run_in_executor(self._history_thread, run)

    def index_elsewhere(self, order: dict[str, Any]) -> None:
        """Have `journal.indexer` store the index of `part`: started if it is not running
        (again, if it died: not more often than INDEXER_RESTART_S), and told the part. It
        reads its orders from a pipe and stops when the pipe closes, so it never outlives
        this process, however that ends. `order`: see journal.indexer."""
        known = order["part"] in self._elsewhere
        self._elsewhere[order["part"]] = order
        if self._indexer is not None and self._indexer.poll() is None:
            if not known:
                self._tell_indexer([order])
            return
        now = time.monotonic()
        if self._threads_shut or now < self._indexer_started + INDEXER_RESTART_S:
            return
        self._indexer_started = now
        self._indexer = subprocess.Popen(
            [sys.executable, "-m", "journal.indexer", str(self.path.resolve()), str(self.busy_timeout_s)],
            stdin=subprocess.PIPE,
            text=True,
        )
        self._tell_indexer(list(self._elsewhere.values()))

    def _tell_indexer(self, orders: list[dict[str, Any]]) -> None:
        assert self._indexer is not None and self._indexer.stdin is not None
        try:
            for order in orders:
                self._indexer.stdin.write(json.dumps(order) + "\n")
            self._indexer.stdin.flush()
        except OSError:  # it died meanwhile: started again on the next call
            pass

    def _stop_indexer(self) -> None:
        indexer, self._indexer = self._indexer, None
        if indexer is None:
            return
        if indexer.stdin is not None:
            try:
                indexer.stdin.close()  # it stores nothing more, and exits
            except OSError:
                pass
        try:
            indexer.wait(INDEXER_STOP_S)
        except subprocess.TimeoutExpired:
            indexer.kill()
            indexer.wait()

    async def reader(self) -> aiosqlite.Connection:
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if self._reader is None:
                await self.on_history(lambda db: None)  # the index file exists before it is attached
                db = await aiosqlite.connect(self.path, timeout=self.busy_timeout_s)
                try:
                    await db.execute("PRAGMA journal_mode=WAL")
                    await db.execute("ATTACH DATABASE ? AS hist", (str(self.history_path),))
                    await db.execute("PRAGMA query_only=1")
                except BaseException:
                    await db.close()
                    raise
                self._reader = db
            return self._reader

    def attach(self) -> None:
        """A journal opened on this file (`release` when it closes)."""
        self._users += 1

    async def release(self) -> None:
        """A journal on this file closed; the last one closes the connections and threads."""
        self._users -= 1
        if self._users > 0:
            return
        if self._reader is not None:
            await self._reader.close()
            self._reader = None

        def closer(*attrs: str) -> Callable[[], None]:
            def close() -> None:  # on the connections' own thread: sqlite3 insists
                for attr in attrs:
                    conn = getattr(self, attr)
                    if conn is not None:
                        conn.close()
                        setattr(self, attr, None)

            return close

        if self._threads_shut:  # close may be called again
            return
        self._threads_shut = True
        await asyncio.get_running_loop().run_in_executor(None, self._stop_indexer)
        loop = asyncio.get_running_loop()
        if self.commit_on_loop:
            closer("_writer")()  # its connection belongs to the loop's thread
        for thread, close in (
            (self._writer_thread, closer("_writer", "_checkpointer")),
            (self._history_thread, closer("_history")),
        ):
            await loop.run_in_executor(thread, close)  # after anything still queued there
            thread.shutdown(wait=False)


class SqliteJournal(Journal):
    """The journal `part` of a SqliteFile (its own file, part 0, when given a path)."""

    def __init__(
        self,
        path: str | Path | SqliteFile,
        *,
        part: int = 0,
        busy_timeout_ms: int = 5_000,
        commit_on_loop: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(path, SqliteFile):
            self.file = path
        else:
            self.file = SqliteFile(path, busy_timeout_ms=busy_timeout_ms, commit_on_loop=commit_on_loop)
        self.file.attach()
        self.part = part
        self._released = False
        self.path, self.history_path = self.file.path, self.file.history_path
        self.name = str(Path(self.path.parent.name, self.path.name))  # e.g. shards/s-001.sqlite
        if isinstance(path, SqliteFile):
            self.name += f"#{part}"

    # -- the journal --------------------------------------------------------------------
    def _read(self, from_genesis: bool) -> tuple[int, bytes, bytes | None, Iterator[Frame]]:
        conn = self.file.connect()
        snap = conn.execute(
            "SELECT seq, hash, body FROM snapshots WHERE part = ? ORDER BY seq DESC LIMIT 1", (self.part,)
        ).fetchone()
        seq, hash_, body = snap if snap else (0, GENESIS_HASH, None)
        first_seq = 0 if from_genesis else seq

        def frames() -> Iterator[Frame]:
            try:
                cursor = conn.execute(  # from the frame the snapshot was taken at, which vouches for it
                    "SELECT first_seq, last_seq, body, hash, lens FROM frames"
                    " WHERE part = ? AND last_seq >= ? ORDER BY first_seq",
                    (self.part, first_seq),
                )
                while chunk := cursor.fetchmany(64):
                    yield from map(_frame, chunk)
            finally:
                conn.close()

        return seq, hash_, body, frames()

    async def _write(self, frame: Frame) -> None:
        row = (self.part, frame.first_seq, frame.last_seq, frame.body, frame.hash, msgspec.msgpack.encode(frame.lens))

        def work(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO frames (part, first_seq, last_seq, body, hash, lens) VALUES (?,?,?,?,?,?)", row)

        await self.file.write(work)

    async def _write_snapshot(self, seq: int, hash_: bytes, body: bytes) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO snapshots (part, seq, hash, body) VALUES (?, ?, ?, ?)",
                (self.part, seq, hash_, body),
            )

        await self.file.write(work)

    # -- the history index ------------------------------------------------------------------
    def _history_seq(self) -> int:
        """How far the index reaches; an index ahead of its journal (a journal restored
        from an older backup, say) is dropped and rebuilt."""
        if not self.file.history_path.exists():
            return 0
        conn = _connect_history(self.file.history_path, self.file.busy_timeout_s)
        try:
            version = conn.execute("SELECT version FROM tagging").fetchone()
            if version is None or version[0] != RECORD_TAGS_VERSION:  # tagged otherwise: every part reindexes
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("DELETE FROM tag_runs")
                conn.execute("DELETE FROM key_entries")
                conn.execute("DELETE FROM progress")
                conn.execute("DELETE FROM tagging")
                conn.execute("INSERT INTO tagging VALUES (?)", (RECORD_TAGS_VERSION,))
                conn.execute("COMMIT")
            found = conn.execute("SELECT seq FROM progress WHERE part = ?", (self.part,)).fetchone()
            indexed = found[0] if found else 0
            journal = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                last = journal.execute(
                    "SELECT COALESCE(MAX(last_seq), 0) FROM frames WHERE part = ?", (self.part,)
                ).fetchone()[0]
            finally:
                journal.close()
            if indexed > last:
                conn.execute("DELETE FROM tag_runs WHERE part = ?", (self.part,))
                conn.execute("DELETE FROM key_entries WHERE part = ?", (self.part,))
                conn.execute("DELETE FROM progress WHERE part = ?", (self.part,))
                indexed = 0
        finally:
            conn.close()
        return int(indexed)

    async def _frames_after(self, seq: int, limit: int) -> list[Frame]:
        db = await self.file.reader()
        cursor = await db.execute(
            "SELECT first_seq, last_seq, body, hash, lens FROM frames"
            " WHERE part = ? AND last_seq > ? ORDER BY first_seq LIMIT ?",
            (self.part, seq, limit),
        )
        return [_frame(cast(FrameRow, r)) for r in await cursor.fetchall()]

    async def _stored_progress(self) -> int:
        db = await self.file.reader()
        cursor = await db.execute("SELECT seq FROM hist.progress WHERE part = ?", (self.part,))
        row = await cursor.fetchone()
        return int(row[0]) if row else 0

    def _index_elsewhere(self) -> None:
        self.file.index_elsewhere(
            {
                "part": self.part,
                "event_source": self.event_source,
                "rows_per_write": self.history_rows_per_write,
                "write_after_s": self.history_write_after_s,
            }
        )

    async def _write_history(self, groups: list[HistoryGroup], through_seq: int) -> None:
        part = self.part

        def work(db: sqlite3.Connection) -> None:
            store_history(db, part, groups, through_seq)

        await self.file.on_history(work)

    async def _bucket(self, db: aiosqlite.Connection, tag: str, some_id: str) -> list[HistoryRow]:
        """Every record stored under `tag` in the bucket of `some_id`."""
        if tag.startswith(KEY_TAG):
            return await self._keyed(db, tag)
        cursor = await db.execute(
            "SELECT run, entries FROM hist.tag_runs WHERE part = ? AND tag = ? AND bucket = ?",
            (self.part, tag, stored_bucket(tag, bucket_of(some_id))),
        )
        rows = await cursor.fetchall()
        return [row for run, blob in rows for row in _stored(tag, run, blob)]

    async def _keyed(self, db: aiosqlite.Connection, tag: str) -> list[HistoryRow]:
        """Every record stored under an idempotency key's tag."""
        cursor = await db.execute(
            "SELECT id, seq, frame, offset, length FROM hist.key_entries WHERE part = ? AND hash_a = ? AND hash_b = ?",
            (self.part, *key_hash(tag)),
        )
        return [HistoryRow(tag, *row) for row in await cursor.fetchall()]

    async def _stored_cursor_seq(self, tag: str, some_id: str) -> int | None:
        db = await self.file.reader()
        rows = await self._bucket(db, tag, some_id)
        return min((r.seq for r in rows if r.id == some_id), default=None)

    async def _runs(self, db: aiosqlite.Connection, q: HistoryQuery) -> AsyncGenerator[list[HistoryRow], None]:
        """The stored records `q` may return, a run at a time in its order: by seq, a
        store's (`run`: stores do not overlap); by id, a bucket's (ids are ordered between
        buckets, not within them), sorted. Bounds here cut whole runs and buckets only."""
        key = _row_seq if q.by_seq else _id_seq
        if q.only_id is not None or q.tag.startswith(KEY_TAG):  # one bucket; a key's few records
            held = await (self._keyed(db, q.tag) if q.only_id is None else self._bucket(db, q.tag, q.only_id))
            yield sorted(held, key=key, reverse=not q.ascending)
            return
        where, args = ["part = ?", "tag = ?"], [self.part, q.tag]
        if q.by_seq:
            if q.before_seq is not None:
                where.append("run < ?")
                args.append(q.before_seq)
            if q.after_seq is not None:  # the run holding after_seq may go past it
                where.append(
                    "run >= COALESCE((SELECT MAX(run) FROM hist.tag_runs WHERE part = ? AND tag = ? AND run <= ?), 0)"
                )
                args += [self.part, q.tag, q.after_seq]
        else:
            for bound, op in ((q.before_id, "<="), (q.after_id, ">=")):
                if bound is not None:
                    where.append(f"bucket {op} ?")
                    args.append(stored_bucket(q.tag, bucket_of(bound)))
        direction = "ASC" if q.ascending else "DESC"
        order = f"run {direction}" if q.by_seq else f"bucket {direction}, run {direction}"
        cursor = await db.execute(
            f"SELECT bucket, run, entries FROM hist.tag_runs WHERE {' AND '.join(where)} ORDER BY {order}", args
        )
        run: list[HistoryRow] = []
        run_of = None  # the store (by seq) or the bucket (by id) of the rows gathered
        try:
            while rows := await cursor.fetchmany(GROUPS_FETCHED):
                for bucket, stored_run, blob in rows:
                    of = stored_run if q.by_seq else bucket  # a store holds rows of several buckets
                    if of != run_of and run:
                        yield sorted(run, key=key, reverse=not q.ascending)
                        run = []
                    run_of = of
                    run += _stored(q.tag, stored_run, blob)
            if run:
                yield sorted(run, key=key, reverse=not q.ascending)
        finally:
            await cursor.close()

    async def _also(self, db: aiosqlite.Connection, tag: str, rows: list[HistoryRow]) -> set[tuple[str, int]]:
        """(id, seq) of the records among `rows` that `tag` indexes too: a record's rows
        under both tags are in the same store, so only that store's rows are read."""
        assert not tag.startswith(KEY_TAG), "a key is not a filter"
        wanted = msgspec.json.encode(sorted({(stored_bucket(tag, bucket_of(r.id)), r.run) for r in rows}))
        cursor = await db.execute(ALSO_RUNS, (wanted, self.part, tag))
        return {
            (e[0], e[1])
            for (blob,) in await cursor.fetchall()
            for _, entries in _run_entries.decode(blob)
            for e in entries
        }

    async def _select(self, q: HistoryQuery) -> list[tuple[int, str, bytes]]:
        assert not (q.by_seq and q.by_id_cursor), "the journal resolves by-seq cursors"
        db = await self.file.reader()
        chosen: list[HistoryRow] = []
        runs = self._runs(db, q)
        try:
            async for run in runs:
                picked = [r for r in run if _within(q, r)]
                if q.also_tag is not None and picked:
                    also = await self._also(db, q.also_tag, picked)
                    picked = [r for r in picked if (r.id, r.seq) in also]
                chosen += picked
                if len(chosen) >= q.limit:
                    break
        finally:
            await runs.aclose()
        chosen = chosen[: q.limit]
        if not chosen:
            return []
        cuts = msgspec.json.encode([(r.frame, r.offset, r.length) for r in chosen])
        cursor = await db.execute(CUT_RECORDS, (cuts, self.part))
        bodies: dict[int, bytes] = {n: body for n, body in await cursor.fetchall()}
        return [(r.seq, r.id, bodies[n]) for n, r in enumerate(chosen)]

    async def _close(self) -> None:
        if not self._released:  # close may be called again
            self._released = True
            await self.file.release()


def _stored(tag: str, run: int, blob: bytes) -> list[HistoryRow]:
    """The records of a stored row, as a query sees them."""
    return [
        HistoryRow(tag, some_id, seq, frame, offset, length, run)
        for frame, entries in _run_entries.decode(blob)
        for some_id, seq, offset, length in entries
    ]


def stored_bucket(tag: str, bucket: str) -> str:
    """The bucket a tag's row is stored under, given `bucket_of` its id (see WIDE_BUCKET_LEN)."""
    return bucket[:WIDE_BUCKET_LEN] if tag.startswith(WIDE_BUCKET_TAGS) else bucket


def key_hash(tag: str) -> tuple[int, int]:
    """An idempotency key's tag as two signed 64-bit integers (`key_entries`)."""
    return _TWO_INT64.unpack(hashlib.blake2b(tag.encode(), digest_size=16).digest())


_TWO_INT64 = struct.Struct(">qq")


def store_history(db: sqlite3.Connection, part: int, groups: list[HistoryGroup], through: int) -> None:
    """Store the index groups of whole frames (in frame order) as one run, and move
    `part`'s progress to `through`, in the caller's transaction. Frames the progress
    covers are left out: the indexer process and the owner may both store them, and a
    run never overlaps another, so a page by position can cut whole runs."""
    found = db.execute("SELECT seq FROM progress WHERE part = ?", (part,)).fetchone()
    done = int(found[0]) if found else 0
    if through <= done:
        return
    if groups and groups[0].frame <= done:  # (stores end on frame boundaries)
        groups = [g for g in groups if g.frame > done]
    # (This loop runs for every index row of every payment: written out.)
    runs: dict[tuple[str, str], list[Any]] = {}  # [entries held, (frame, entries), ...]
    keys: list[tuple[int, int, int, str, int, int, int]] = []
    wide, wide_len = WIDE_BUCKET_TAGS, WIDE_BUCKET_LEN
    for tag, bucket, frame, entries in groups:
        if tag.startswith(KEY_TAG):
            a, b = key_hash(tag)
            for some_id, seq, offset, length in entries:
                keys.append((a, b, seq, some_id, frame, offset, length))
            continue
        at = (tag, bucket[:wide_len] if tag.startswith(wide) else bucket)
        held = runs.get(at)
        if held is None:
            runs[at] = [len(entries), (frame, entries)]
        else:
            held[0] += len(entries)
            held.append((frame, entries))
    first = groups[0].frame if groups else through
    rows: list[tuple[str, str, int, int, list[tuple[int, list[Entry]]]]] = []
    for (tag, bucket), held in runs.items():
        if held[0] < RUN_CHUNK:
            rows.append((tag, bucket, first, 0, held[1:]))
            continue
        start, count = 1, 0
        for n in range(1, len(held)):
            count += len(held[n][1])
            if count >= RUN_CHUNK or n == len(held) - 1:
                rows.append((tag, bucket, first, start, held[start : n + 1]))
                start, count = n + 1, 0
    if rows:  # each row's entries a slice of one blob; SQLite's JSON reads only the row's key
        blobs: list[bytes] = []
        where: list[tuple[str, str, int, int, int, int]] = []
        cut = 1  # substr() counts from 1
        for tag, bucket, run, chunk, frames in rows:
            blob = _encode_entries(frames)
            blobs.append(blob)
            where.append((tag, bucket, run, chunk, cut, len(blob)))
            cut += len(blob)
        db.execute(RUNS_INSERT, (part, b"".join(blobs), msgspec.json.encode(where)))
    if keys:
        db.execute(KEYS_INSERT, (part, msgspec.json.encode(keys)))
    db.execute(PROGRESS_UPSERT, (part, through))


_id_seq = operator.attrgetter("id", "seq")


def _within(q: HistoryQuery, r: HistoryRow) -> bool:
    """Inside the query's bounds (SQL cuts only whole groups and buckets)."""
    return (
        (q.only_id is None or r.id == q.only_id)
        and (q.before_seq is None or r.seq < q.before_seq)
        and (q.after_seq is None or r.seq > q.after_seq)
        and (q.before_id is None or r.id < q.before_id)
        and (q.after_id is None or r.id > q.after_id)
    )
