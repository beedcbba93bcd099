"""SQLite journal: one file per partition, coordinator or registry.

WAL with synchronous=FULL: a commit returns only after the WAL is fsynced, and a torn
write at the tail is discarded by SQLite's frame checksums on the next open, so replay
always sees a prefix of committed batches. Rows are written with `executemany` in one
transaction per batch, so one fsync covers the whole batch.

Loading uses the synchronous sqlite3 module because actors rebuild state inside their
synchronous `__init__`. Writes use a plain sqlite3 connection owned by one dedicated
thread: a whole batch (rows, tags, commit) is one function run there, so a flush costs one
thread hand-off instead of one per statement (aiosqlite's model; measured ~3x the flush
latency), and the single thread also serialises transactions, so a snapshot can never
commit half of a batch. History queries use a read-only aiosqlite connection, so under WAL
they only ever see committed rows.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiosqlite

from journal.base import GENESIS_HASH, Journal, Row

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq  INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    key  TEXT,
    body BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_key ON records (key, kind, seq) WHERE key IS NOT NULL;
CREATE TABLE IF NOT EXISTS tags (
    tag TEXT NOT NULL,
    id  TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (tag, id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_by_seq ON tags (tag, seq);
DROP INDEX IF EXISTS tags_of_row;
CREATE TABLE IF NOT EXISTS snapshots (
    seq  INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    body BLOB NOT NULL
);
"""


def _connect_sync(path: Path, timeout_s: float = 5.0) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None)  # explicit BEGIN/COMMIT
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SCHEMA)
    except BaseException:
        conn.close()
        raise
    return conn


class SqliteJournal(Journal):
    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 5_000, **kwargs: int) -> None:
        super().__init__(**kwargs)
        self.busy_timeout_s = busy_timeout_ms / 1000
        self.path = Path(path)
        self.name = str(Path(self.path.parent.name, self.path.name))  # e.g. partitions/p-0003.sqlite
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer: sqlite3.Connection | None = None  # used only on the writer thread
        self._writer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"journal-{self.path.stem}")
        self._reader: aiosqlite.Connection | None = None
        self._open_lock = asyncio.Lock()  # one reader connection, even on concurrent first use

    def _read(self, from_genesis: bool) -> tuple[int, bytes, bytes | None, Iterator[Row]]:
        conn = _connect_sync(self.path)
        snap = conn.execute("SELECT seq, hash, body FROM snapshots ORDER BY seq DESC LIMIT 1").fetchone()
        seq, hash_, body = snap if snap else (0, GENESIS_HASH, None)
        first_seq = 0 if from_genesis else seq

        def rows() -> Iterator[Row]:
            try:
                cursor = conn.execute(
                    "SELECT seq, kind, key, body, hash FROM records WHERE seq > ? ORDER BY seq", (first_seq,)
                )
                while chunk := cursor.fetchmany(10_000):
                    for r in chunk:
                        yield Row(*r)
            finally:
                conn.close()

        return seq, hash_, body, rows()

    async def _reader_db(self) -> aiosqlite.Connection:
        async with self._open_lock:
            if self._reader is None:
                db = await aiosqlite.connect(self.path, timeout=self.busy_timeout_s)
                await db.execute("PRAGMA journal_mode=WAL")
                await db.execute("PRAGMA query_only=1")
                self._reader = db
            return self._reader

    async def _on_writer(self, work: Callable[[sqlite3.Connection], None]) -> None:
        def run() -> None:
            if self._writer is None:
                self._writer = _connect_sync(self.path, self.busy_timeout_s)
            db = self._writer
            try:
                db.execute("BEGIN IMMEDIATE")
                work(db)
                db.execute("COMMIT")
            except BaseException:
                try:
                    if db.in_transaction:  # SQLite may have rolled back already (disk full, I/O error)
                        db.execute("ROLLBACK")
                except sqlite3.Error:
                    db.close()  # a fresh connection for the retry, not one stuck in a transaction
                    self._writer = None
                raise

        await asyncio.get_running_loop().run_in_executor(self._writer_thread, run)

    async def _write(self, rows: list[Row]) -> None:
        records = [r[:5] for r in rows]
        tags = [(tag, r.tags[0], r.seq) for r in rows if r.tags for tag in r.tags[1]]

        def work(db: sqlite3.Connection) -> None:
            db.executemany("INSERT INTO records (seq, kind, key, body, hash) VALUES (?, ?, ?, ?, ?)", records)
            if tags:
                db.executemany("INSERT INTO tags (tag, id, seq) VALUES (?, ?, ?)", tags)

        await self._on_writer(work)

    async def _select(self, key: str, kind: str, limit: int, before_seq: int | None) -> list[Row]:
        db = await self._reader_db()
        cursor = await db.execute(
            "SELECT seq, kind, key, body, hash FROM records WHERE key = ? AND kind = ? AND seq < ?"
            " ORDER BY seq DESC LIMIT ?",
            (key, kind, before_seq if before_seq is not None else 2**62, limit),
        )
        return [Row(*r) for r in await cursor.fetchall()]

    async def _select_tagged(
        self, tag: str, limit: int, before_id: str | None, also_tag: str | None, by_seq: bool
    ) -> list[Row]:
        db = await self._reader_db()
        where, args = ["t.tag = ?"], [tag]
        if also_tag is not None:
            where.append("EXISTS (SELECT 1 FROM tags u WHERE u.tag = ? AND u.id = t.id AND u.seq = t.seq)")
            args.append(also_tag)
        if before_id is not None and by_seq:
            where.append("t.seq < COALESCE((SELECT MIN(seq) FROM tags c WHERE c.tag = ? AND c.id = ?), 0)")
            args += [tag, before_id]
        elif before_id is not None:
            where.append("t.id < ?")
            args.append(before_id)
        order = "t.seq DESC" if by_seq else "t.id DESC, t.seq DESC"
        cursor = await db.execute(
            "SELECT r.seq, r.kind, r.key, r.body, r.hash FROM tags t JOIN records r ON r.seq = t.seq"
            f" WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?",
            (*args, limit),
        )
        return [Row(*r) for r in await cursor.fetchall()]

    async def _write_snapshot(self, seq: int, hash_: bytes, body: bytes) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute("INSERT OR REPLACE INTO snapshots (seq, hash, body) VALUES (?, ?, ?)", (seq, hash_, body))

        await self._on_writer(work)

    async def _close(self) -> None:
        if self._reader is not None:
            await self._reader.close()
            self._reader = None

        def close_writer() -> None:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

        if self._writer is not None:
            await asyncio.get_running_loop().run_in_executor(self._writer_thread, close_writer)
        self._writer_thread.shutdown(wait=False)  # idempotent: close may be called again
