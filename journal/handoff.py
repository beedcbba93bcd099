"""Handing partitions over between shard files when the shard count changes.

A partition's journal (frames and snapshots, one hash chain) lives in the file of the
shard that owns it. Started with another layout, a shard first takes every partition it
now owns out of the other shards' files: it copies the partition into its own file in one
transaction, then deletes it from the other file. Only then does it open its journals, so a
partition has one writer at every moment (a layout change needs every actor stopped, which
`actors.factory` checks).

A crash between the copy and the delete leaves two copies of one chain, or, if the layout
changed back meanwhile, a copy and a longer continuation of it: chains only grow, so the
longer one is the partition and the other must be a prefix of it (same hash at its last
seq). Two chains that disagree are refused loudly (JournalCorrupt), never merged.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from journal.base import JournalCorrupt
from journal.sqlite import _connect_history, _connect_sync


def _tip(db: sqlite3.Connection, schema: str, part: int) -> tuple[int, bytes] | None:
    """(last seq, hash of the frame ending there) of journal `part`, if it has frames."""
    row = db.execute(
        f"SELECT last_seq, hash FROM {schema}.frames WHERE part = ? ORDER BY first_seq DESC LIMIT 1", (part,)
    ).fetchone()
    return None if row is None else (row[0], row[1])


def _hash_at(db: sqlite3.Connection, schema: str, part: int, last_seq: int) -> bytes | None:
    row = db.execute(f"SELECT hash FROM {schema}.frames WHERE part = ? AND last_seq = ?", (part, last_seq)).fetchone()
    return None if row is None else bytes(row[0])


def adopt_partitions(own: Path, files: list[Path], owned: list[int]) -> list[int]:
    """Move the partitions in `owned` from the other shard `files` into `own`; returns
    those copied here (a partition found elsewhere only as an older copy is just dropped
    there)."""
    others = [f for f in files if f.resolve() != own.resolve()]
    if not others:
        return []
    moved: list[int] = []
    with contextlib.closing(_connect_sync(own)) as db:
        for other in others:
            _connect_sync(other).close()  # refuses a file in an older format, clearly
            db.execute("ATTACH DATABASE ? AS src", (str(other),))
            try:
                dropped = [p for p in owned if _take(db, other, p, moved)]
            finally:
                db.execute("DETACH DATABASE src")
            if dropped:
                _drop(other, dropped)
    return sorted(set(moved))


def _take(db: sqlite3.Connection, other: Path, part: int, moved: list[int]) -> bool:
    """Make `db` hold the longer chain of `part`; True if `other` holds it and must drop it."""
    theirs = _tip(db, "src", part)
    if theirs is None:
        return False
    mine = _tip(db, "main", part)
    if mine is None or theirs[0] > mine[0]:
        if mine is not None and _hash_at(db, "src", part, mine[0]) != mine[1]:
            raise JournalCorrupt(f"partition {part}: the chain here is not a prefix of the one in {other.name}")
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM main.frames WHERE part = ?", (part,))
            db.execute("DELETE FROM main.snapshots WHERE part = ?", (part,))
            db.execute(
                "INSERT INTO main.frames (part, first_seq, last_seq, body, hash, lens)"
                " SELECT part, first_seq, last_seq, body, hash, lens FROM src.frames WHERE part = ?",
                (part,),
            )
            db.execute(
                "INSERT INTO main.snapshots (part, seq, hash, body)"
                " SELECT part, seq, hash, body FROM src.snapshots WHERE part = ?",
                (part,),
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        moved.append(part)
    elif _hash_at(db, "main", part, theirs[0]) != theirs[1]:
        raise JournalCorrupt(f"partition {part}: the chain in {other.name} is not a prefix of the one here")
    return True


def _drop(other: Path, parts: list[int]) -> None:
    """Forget `parts` in a file that no longer owns them (after they are safe elsewhere)."""
    marks = ",".join("?" * len(parts))
    with contextlib.closing(_connect_sync(other)) as db:
        db.execute("BEGIN IMMEDIATE")
        db.execute(f"DELETE FROM frames WHERE part IN ({marks})", parts)
        db.execute(f"DELETE FROM snapshots WHERE part IN ({marks})", parts)
        db.execute("COMMIT")
    history = Path(f"{other}-history")
    if history.exists():  # derived data: the new owner rebuilds its own index from the frames
        with contextlib.closing(_connect_history(history, 5.0)) as db:
            db.execute(f"DELETE FROM tag_runs WHERE part IN ({marks})", parts)
            db.execute(f"DELETE FROM key_entries WHERE part IN ({marks})", parts)
            db.execute(f"DELETE FROM progress WHERE part IN ({marks})", parts)
