"""`rayledger migrate`: a data directory of an older journal format, rewritten as format 3.

Formats 1 (rayledger 0.1: a row per record, in `records`) and 2 (rayledger 0.2: frames,
one journal per file) keep a file per partition, `partitions/p-NNNN.sqlite`; format 3
keeps a shard's partitions in one file, each as its own journal `part`. Every partition
goes into `shards/s-000.sqlite` under its number; a shard of whatever layout the ledger is
served with then takes its partitions from there (journal.handoff). The registry and the
coordinators stay where they are, as part 0 (a file's only journal).

Format 2 frames are copied byte for byte (the chain did not change); a format 1 record
becomes a frame of its own, under the same seq, and the chain is computed anew. Either way
the old chain and every record are checked first, so a damaged journal is refused, never
rewritten into a chain that verifies. Snapshots stay behind: a journal keeps every frame
from its first, so replay from genesis rebuilds the same state, and a snapshot body written
by an older version is never read by this one (the next is taken as usual). History
indexes are derived and rebuilt on the next start, so they are dropped.

Crash-safe and resumable: the new files are built in `migrating/` beside the journals and
synced, then marked complete; only then are the old files moved into `pre-migrate-<N>/`
and the new ones renamed into place, each step done once and skipped when repeated. An
interrupted build is started again; an interrupted swap is finished. The caller holds the
data directory's lock, so no server writes meanwhile.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import msgspec

from journal.base import GENESIS_HASH, Frame, JournalCorrupt, frame_hash
from journal.private import write_private
from journal.sqlite import FORMAT, _connect_sync
from ledger.records import RecordCodec, width

STAGING = "migrating"
COMPLETE = "COMPLETE"  # in STAGING once every new file is built and synced
BACKUP = "pre-migrate-{format}"
SHARD_FILE = Path("shards", "s-000.sqlite")
RELEASES = {1: "0.1", 2: "0.2"}  # the version that wrote each older format
ROWS_PER_TRANSACTION = 4_096


class MigrateError(Exception):
    """The directory cannot be migrated as it is (the message says why and what to do)."""


class OldJournal(NamedTuple):
    path: Path  # relative to the data directory
    format: int
    target: Path  # relative too
    part: int


def file_format(path: Path) -> int:
    """The journal format a file is written in, from its tables (0: no journal yet)."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "records" in tables:
            return 1
        if "frames" not in tables:
            return 0
        columns = {row[1] for row in conn.execute("PRAGMA table_info(frames)")}
        return 3 if "part" in columns else 2


def old_journals(data_dir: Path) -> list[OldJournal]:
    """The journals of `data_dir` in a format before this one, and where each goes."""
    found: list[OldJournal] = []
    candidates = [
        *((p, SHARD_FILE, int(p.stem[2:])) for p in sorted((data_dir / "partitions").glob("p-*.sqlite"))),
        *((p, p.relative_to(data_dir), 0) for p in sorted((data_dir / "coordinators").glob("c-*.sqlite"))),
        *((p, p.relative_to(data_dir), 0) for p in [data_dir / "registry.sqlite"] if p.is_file()),
    ]
    for path, target, part in candidates:
        fmt = file_format(path)
        if fmt and fmt < FORMAT:
            found.append(OldJournal(path.relative_to(data_dir), fmt, target, part))
    return found


def command_for(data_dir: Path) -> str:
    return f"rayledger migrate --data-dir {data_dir}"


def stale_message(data_dir: Path) -> str | None:
    """What a command refusing `data_dir` says, if it holds journals of an older format."""
    if (data_dir / STAGING / COMPLETE).exists():
        return f"{data_dir} is half way through a migration; run `{command_for(data_dir)}` to finish it"
    try:
        old = old_journals(data_dir) if data_dir.is_dir() else []
    except sqlite3.Error:  # not a journal at all: opening it says so better
        return None
    if not old:
        return None
    formats = " and ".join(f"format {f} (rayledger {RELEASES[f]})" for f in sorted({o.format for o in old}))
    return (
        f"{data_dir} holds journals in {formats}; this version reads format {FORMAT}:"
        f" run `{command_for(data_dir)}` to convert them"
    )


# -- reading the old formats, checked ------------------------------------------------------------


def _v1_hash(prev_hash: bytes, seq: int, body: bytes) -> bytes:
    """Format 1's chain: each record hashed onto the one before."""
    h = hashlib.blake2b(prev_hash, digest_size=16)
    h.update(seq.to_bytes(8, "big"))
    h.update(body)
    return h.digest()


def _frames_v1(conn: sqlite3.Connection, name: str, codec: RecordCodec) -> Iterator[Frame]:
    """A frame per record, chained anew once the record's own link is checked."""
    old_hash, new_hash, last = GENESIS_HASH, GENESIS_HASH, 0
    for seq, body, stored_hash in conn.execute("SELECT seq, body, hash FROM records ORDER BY seq"):
        if seq != last + 1:
            raise JournalCorrupt(f"{name}: sequence gap: expected {last + 1}, found {seq}")
        if _v1_hash(old_hash, seq, body) != stored_hash:
            raise JournalCorrupt(f"{name}: hash chain broken at seq {seq}")
        try:
            codec.decode(body)
        except msgspec.DecodeError as exc:
            raise JournalCorrupt(f"{name}: the record at seq {seq} does not decode: {exc}") from None
        frame_body = msgspec.msgpack.encode([msgspec.Raw(body)])
        frame = Frame(seq, seq, frame_body, b"", (len(body),))
        new_hash = frame_hash(new_hash, frame)
        old_hash, last = bytes(stored_hash), seq
        yield frame._replace(hash=new_hash)


def _frames_v2(conn: sqlite3.Connection, name: str, codec: RecordCodec) -> Iterator[Frame]:
    """The frames as stored, once their chain and records are checked."""
    prev_hash, last = GENESIS_HASH, 0
    rows = conn.execute("SELECT first_seq, last_seq, body, hash, lens FROM frames ORDER BY first_seq")
    for first, last_seq, body, stored_hash, lens in rows:
        frame = Frame(first, last_seq, bytes(body), bytes(stored_hash), tuple(msgspec.msgpack.decode(lens)))
        if first != last + 1:
            raise JournalCorrupt(f"{name}: sequence gap: expected {last + 1}, found {first}")
        if frame_hash(prev_hash, frame) != frame.hash:
            raise JournalCorrupt(f"{name}: hash chain broken at seq {first}")
        try:
            records = codec.decode_frame(frame.body)
        except msgspec.DecodeError as exc:
            raise JournalCorrupt(f"{name}: the frame at seq {first} does not decode: {exc}") from None
        if not len(records) == len(frame.lens) or sum(map(width, records)) != last_seq - first + 1:
            raise JournalCorrupt(f"{name}: the frame at seq {first} holds {len(records)} records")
        prev_hash, last = frame.hash, last_seq
        yield frame


def _copy(old: Path, fmt: int, name: str, new: sqlite3.Connection, part: int) -> int:
    """Write journal `part` of `new` from the old file; returns its records."""
    codec = RecordCodec()
    records = 0
    with contextlib.closing(sqlite3.connect(f"file:{old}?mode=ro", uri=True)) as conn:
        frames = (_frames_v1 if fmt == 1 else _frames_v2)(conn, name, codec)
        while True:
            try:
                batch = [f for _, f in zip(range(ROWS_PER_TRANSACTION), frames, strict=False)]
            except sqlite3.Error as exc:  # unreadable (malformed, a value of the wrong type): damaged
                raise JournalCorrupt(f"{name}: {exc}") from None
            if not batch:
                return records
            new.execute("BEGIN IMMEDIATE")
            new.executemany(
                "INSERT INTO frames (part, first_seq, last_seq, body, hash, lens) VALUES (?, ?, ?, ?, ?, ?)",
                [(part, f.first_seq, f.last_seq, f.body, f.hash, msgspec.msgpack.encode(f.lens)) for f in batch],
            )
            new.execute("COMMIT")
            records += sum(f.last_seq - f.first_seq + 1 for f in batch)


# -- the migration -------------------------------------------------------------------------------


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _move(source: Path, target: Path) -> None:
    """Rename, durably: each step of the swap is on disk before the next is taken."""
    source.rename(target)
    _fsync(target.parent)
    if source.parent != target.parent:
        _fsync(source.parent)


def _siblings(path: Path) -> list[Path]:
    """A journal file with its WAL and shared-memory files (what moves with it)."""
    return [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]


def _histories(data_dir: Path) -> list[Path]:
    """History indexes (`<journal>-history`, with their WAL files) of the old layout."""
    found = [*data_dir.glob("registry.sqlite-history*")]
    for folder in ("partitions", "coordinators"):
        found += (data_dir / folder).glob("*.sqlite-history*")
    return sorted(found)


def _build(data_dir: Path, old: list[OldJournal], backup: Path, say: Callable[[str], None]) -> None:
    staging = data_dir / STAGING
    if staging.exists():  # an interrupted build: nothing was moved yet, start again
        shutil.rmtree(staging)
    staging.mkdir(mode=0o700)  # holds the ledger's data, like the directory it is in
    by_target: dict[Path, list[OldJournal]] = {}
    for o in old:
        by_target.setdefault(o.target, []).append(o)
    for target, sources in by_target.items():
        path = staging / target
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.closing(_connect_sync(path)) as new:  # format 3 schema; closing checkpoints the WAL
            for o in sources:
                records = _copy(data_dir / o.path, o.format, str(o.path), new, o.part)
                where = f"{target}, journal {o.part}" if target == SHARD_FILE else str(target)
                say(f"{o.path}: format {o.format}, {records} record{'s' * (records != 1)} -> {where}")
        _fsync(path)
        _fsync(path.parent)
    for folder in {staging / t.parent for t in by_target}:
        _fsync(folder)
    write_private(staging / COMPLETE, (backup.name + "\n").encode())  # names where the old files go
    _fsync(staging)


def _swap(data_dir: Path, backup: Path, say: Callable[[str], None]) -> None:
    """Old files into `backup`, built ones into place. Each move happens once: an entry still
    in staging has not been moved in, so what stands at its place is the old one."""
    staging = data_dir / STAGING
    backup.mkdir(mode=0o700, exist_ok=True)
    for history in _histories(data_dir):
        history.unlink()
        if history.name.endswith("-history"):
            say(f"{history.relative_to(data_dir)}: removed (a derived index, rebuilt on start)")
    if (data_dir / "partitions").exists():
        _move(data_dir / "partitions", backup / "partitions")
    for entry in sorted(p.name for p in staging.iterdir() if p.name != COMPLETE):
        current = data_dir / entry
        if current.is_dir():  # the old coordinators, or shards without journals a newer server left
            _move(current, backup / entry)
        else:
            for sibling in _siblings(current):
                _move(sibling, backup / sibling.name)
        _move(staging / entry, current)
    shutil.rmtree(staging)
    _fsync(data_dir)


def _has_frames(path: Path) -> bool:
    if file_format(path) < 3:
        return False
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return conn.execute("SELECT 1 FROM frames LIMIT 1").fetchone() is not None


def migrate(data_dir: Path, say: Callable[[str], None] = print) -> int:
    """Rewrite every journal of `data_dir` in an older format as format 3; returns how many
    were rewritten (0: nothing to do). The caller holds the directory's lock."""
    staging = data_dir / STAGING
    if (staging / COMPLETE).exists():
        backup = data_dir / (staging / COMPLETE).read_text().strip()
        say(f"finishing the migration interrupted in {data_dir}")
        _swap(data_dir, backup, say)
        say(f"migrated to format {FORMAT}; the files as they were are in {backup} (remove it once the ledger serves)")
        return len(list(backup.rglob("*.sqlite")))
    old = old_journals(data_dir)
    if not old:
        if staging.exists():  # built by an interrupted run that found old files, which are gone now
            shutil.rmtree(staging)
        say(f"nothing to migrate: the journals in {data_dir} are in format {FORMAT}")
        return 0
    shards = data_dir / "shards"
    if any(_has_frames(p) for p in shards.glob("s-*.sqlite")):
        raise MigrateError(
            f"{data_dir} holds journals of both layouts ({old[0].path} and {shards}): move one away, then migrate"
        )
    backup = data_dir / BACKUP.format(format="-".join(str(f) for f in sorted({o.format for o in old})))
    if backup.exists():
        raise MigrateError(f"{backup} is left from an earlier migration; move it away, then migrate again")
    try:
        _build(data_dir, old, backup, say)
    except BaseException:  # nothing moved yet: leave the directory as it was
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _swap(data_dir, backup, say)
    say(
        f"migrated {len(old)} journals to format {FORMAT}; the files as they were are in {backup}"
        " (remove it once the ledger serves)"
    )
    return len(old)
