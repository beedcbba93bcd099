"""Group commit shared by every adapter.

`append()` is synchronous: it assigns the next sequence number and queues the record, so a
caller can decide, append and apply without a suspension point. `durable(seq)` waits until
a flush covers `seq`. One flusher task per journal writes whatever has queued while the
previous flush was in flight as one *frame*: a single stored row holding those records as
one msgpack array, chained to the previous frame by a hash. Concurrent callers share one
fsync without any timer, and a flush costs one row however many records it carries (one
row per record, plus its history-index rows, made the commit ~2x slower: RESULTS.md).

A failed write leaves the batch queued and is retried with backoff; meanwhile `writable`
is False so callers refuse new work (503) instead of piling it up. Nothing is acknowledged
until it is durable, so a caller that gives up waiting has told its client nothing.

History (statements, payment lists, lookups by id or idempotency key) is an index derived
from durable frames, outside the commit. A frame is held in memory as soon as it is written
(`RecentHistory`; its index rows are built when a query first needs them), and the stored
index is written in large sorted batches, by a second task here or, with
`history_elsewhere`, by a process of its own (`journal.indexer`): rows keyed by balance
land all over SQLite's B-trees, and stored a flush at a time they cost ~3x more
(RESULTS.md). A query reads both, so it sees everything acknowledged. The stored index is
rebuildable: on open it catches up from the frames it has not covered.
"""

from __future__ import annotations

import abc
import asyncio
import bisect
import hashlib
import logging
import operator
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import NamedTuple

import msgspec

from ledger.records import (
    EVENT_TYPES,
    Batch,
    DecidedBatch,
    PostedBatch,
    Record,
    RecordCodec,
    event_id,
    event_of,
    payment_event,
    payment_tags,
    record_tags,
    width,
)

GENESIS_HASH = b"\x00" * 16
FLUSH_RETRY_S_MAX = 1.0
log = logging.getLogger("rayledger.journal")


class JournalCorrupt(Exception):
    """The stored chain has a hole, a reordering or a hash mismatch: stop loudly."""


class JournalUnavailable(Exception):
    """The journal cannot be written right now; nothing new is accepted."""


class Frame(NamedTuple):
    """Records `first_seq..last_seq`, stored as one row; `lens` are their encoded lengths
    (`body` is a msgpack array header followed by the records), so a query can cut one
    record out. `hash` chains the frame to the one before (it covers seqs and body)."""

    first_seq: int
    last_seq: int
    body: bytes
    hash: bytes
    lens: tuple[int, ...]


class Sealed(NamedTuple):
    """A frame as this process built it: with its records, so indexing decodes nothing."""

    frame: Frame
    records: list[Record]


class HistoryRow(NamedTuple):
    """One record under one tag: how a query sees the index."""

    tag: str
    id: str
    seq: int
    frame: int  # first_seq of the frame holding the record
    offset: int  # of the record within the frame body
    length: int
    run: int = 0  # stored rows: the store (its first position) that wrote it


Entry = tuple[str, int, int, int]  # a record in a group: (id, seq, offset, length)


class HistoryGroup(NamedTuple):
    """The records of one frame that carry `tag` and whose ids share `bucket` (the
    first characters of the id, `bucket_of`): how memory holds the index of a frame not
    stored yet. The stored index merges a store's groups of a tag and bucket into one row
    (`journal.sqlite.store_history`)."""

    tag: str
    bucket: str
    frame: int
    entries: list[Entry]  # in seq order


EVENT_TAGS = {kind: f"ev:{kind}" for kind in EVENT_TYPES}  # made once, not per event
BUCKET_LEN = 13  # "pay_" and 9 characters of its time: ids made within ~32 ms
EVENT_BUCKET_LEN = 15  # "evt_" and 11 digits of its time: events within 100 ms


def bucket_of(some_id: str) -> str:
    """The id's first characters: cutting ids to one length keeps their order (a smaller
    bucket holds only smaller ids), so a page by id reads whole buckets in order and sorts
    within them; an event id's bucket is longer, and since event ids are the only ones that
    start "evt_", any two ids that differ keep their order too. The length only sets how
    many records a bucket holds. (Change it, and bump RECORD_TAGS_VERSION.)"""
    return some_id[: EVENT_BUCKET_LEN if some_id.startswith("evt_") else BUCKET_LEN]


def expand(groups: list[HistoryGroup]) -> Iterator[HistoryRow]:
    for g in groups:
        for some_id, seq, offset, length in g.entries:
            yield HistoryRow(g.tag, some_id, seq, g.frame, offset, length)


class HistoryQuery(NamedTuple):
    """Indexed records carrying `tag` (and `also_tag`), by id or by seq, strictly between
    the cursors: older than the record with id `before_id` (or `before_seq`) and newer than
    `after_id` (or `after_seq`). Newest first, or oldest first if `ascending` (the page
    just newer than a cursor is the `limit` oldest above it). With `only_id`, just those
    indexed under that id."""

    tag: str
    limit: int
    before_id: str | None = None
    also_tag: str | None = None
    by_seq: bool = False
    before_seq: int | None = None
    only_id: str | None = None
    after_id: str | None = None
    after_seq: int | None = None
    ascending: bool = False

    @property
    def by_id_cursor(self) -> bool:
        """Bounded by a record's id (a by-seq query's journal resolves it into a seq)."""
        return self.before_id is not None or self.after_id is not None


class StoredRecord(NamedTuple):
    seq: int
    record: Record


class Loaded(NamedTuple):
    snapshot_seq: int
    snapshot: bytes | None
    records: Iterator[StoredRecord]


def chain_hash(prev_hash: bytes, first_seq: int, last_seq: int, body: bytes, lens: tuple[int, ...]) -> bytes:
    """Covers everything stored for a frame, so any change to a frame or its position breaks
    the chain from there on (the lengths too: they say where each record starts)."""
    h = hashlib.blake2b(prev_hash, digest_size=16)
    h.update(first_seq.to_bytes(8, "big"))
    h.update(last_seq.to_bytes(8, "big"))
    h.update(b"".join(n.to_bytes(4, "big") for n in lens))
    h.update(body)
    return h.digest()


def frame_hash(prev_hash: bytes, frame: Frame) -> bytes:
    return chain_hash(prev_hash, frame.first_seq, frame.last_seq, frame.body, frame.lens)


def history_groups(frame: Frame, records: list[Record], event_source: str | None = None) -> list[HistoryGroup]:
    """Index groups of a frame's records (`record_tags`); with `event_source`, also each
    event's, under "ev" and "ev:<type>", by its event id (the API's events, in time order)."""
    groups: dict[tuple[str, str], list[Entry]] = {}
    found = groups.get  # (this loop runs for every record an actor journals, on its event loop)
    seq, offset = frame.first_seq, len(frame.body) - sum(frame.lens)  # after the array header
    for record, length in zip(records, frame.lens, strict=True):
        if isinstance(record, DecidedBatch):
            _index_payments(groups, record, seq, offset, length, event_source)
            seq += record.width
            offset += length
            continue
        for some_id, at, tags in _indexed(record, seq, event_source):
            entry, bucket = (some_id, at, offset, length), bucket_of(some_id)
            for tag in tags:
                group = found((tag, bucket))
                if group is None:
                    groups[tag, bucket] = [entry]
                else:
                    group.append(entry)
        seq += width(record)
        offset += length
    assert seq == frame.last_seq + 1, "a frame's records and its seqs"
    return [HistoryGroup(tag, bucket, frame.first_seq, entries) for (tag, bucket), entries in groups.items()]


def _indexed(record: Record, seq: int, event_source: str | None) -> list[tuple[str, int, tuple[str, ...]]]:
    """(id, position, tags) of what a record at `seq` puts in the index: its own tags and
    its event's, or those of each item of a batch (at the item's own position)."""
    if isinstance(record, PostedBatch):  # each post a statement line
        pairs = zip(record.payment_ids, record.balance_ids, strict=True)
        return [(p, seq + n, ("po:" + b,)) for n, (p, b) in enumerate(pairs)]
    out: list[tuple[str, int, tuple[str, ...]]] = []
    tagged = record_tags(record)
    if tagged is not None:
        out.append((tagged[0], seq, tagged[1]))
    if event_source is not None:
        event = event_of(record)
        if event is not None:
            kind = EVENT_TAGS.get(event[0]) or f"ev:{event[0]}"
            out.append((event_id(event[1], event_source, seq), seq, ("ev", kind)))
    return out


def _index_payments(
    groups: dict[tuple[str, str], list[Entry]],
    record: DecidedBatch,
    seq: int,
    offset: int,
    length: int,
    event_source: str | None,
) -> None:
    """`_indexed` for a batch of payments, written out (it runs for every payment a
    coordinator decides): no list of what each payment puts in the index in between."""
    found = groups.get
    for at, p in enumerate(record.payments, seq):
        entry, bucket = (p.id, at, offset, length), bucket_of(p.id)
        for tag in payment_tags(p):
            group = found((tag, bucket))
            if group is None:
                groups[tag, bucket] = [entry]
            else:
                group.append(entry)
        if event_source is None or (event := payment_event(p)) is None:
            continue
        some_id = event_id(event[1], event_source, at)
        event_bucket, entry = some_id[:EVENT_BUCKET_LEN], (some_id, at, offset, length)
        for tag in ("ev", EVENT_TAGS[event[0]]):
            group = found((tag, event_bucket))
            if group is None:
                groups[tag, event_bucket] = [entry]
            else:
                group.append(entry)


def kind_of(record: Record) -> str:
    return type(record).__struct_config__.tag  # type: ignore[return-value]


def _is_indexed_batch(body: bytes) -> bool:
    """Whether an encoded record is a batch whose items the index holds: an array of fewer
    than 16 fields (one header byte, whatever fields are added later), then the tag."""
    return body[1:4] in _BATCH_TAGS


def _reading(codec: RecordCodec) -> Callable[[bytes, int], Record]:
    """What a position of an encoded record holds, for one query: a batch's items share
    its body, which is read once (`RecordCodec.reader`)."""
    readers: dict[bytes, Callable[[int], Record]] = {}

    def at(body: bytes, seq: int) -> Record:
        read = readers.get(body)
        if read is None:
            read = readers[body] = codec.reader(body)
        return read(seq)

    return at


_BATCH_TAGS = tuple(
    RecordCodec().encode(example)[1:4] for example in (DecidedBatch(1, []), PostedBatch(1, 0, [], [], [], []))
)


# The larger a store, the fewer rows per payment: a store is one run, with a row per tag
# and id bucket (`journal.sqlite`); 20,000 positions cost ~19 us per keyed payment into a
# growing index (`python -m benchmarks.history`). Memory is counted in journal positions (a
# payment is one, and about seven index entries): a position held costs its decoded record
# and its share of the frame's body, ~750 bytes.
HISTORY_ROWS_PER_WRITE = 20_000  # positions: the stored index is written once this many are held...
HISTORY_WRITE_AFTER_S = 5.0  # ...or once the oldest has waited this long (and on close)
HISTORY_ROWS_IN_MEMORY_MAX = 120_000  # past this (the index cannot be written) queries wait for it
HISTORY_CATCH_UP_FRAMES = 64  # frames read back per step when the index is behind the journal
HISTORY_PROGRESS_READ_S = 1.0  # how often a journal whose index another process stores reads its progress


class _Held:
    """A written frame the stored index does not cover yet: its records, and their index
    groups once a query needed them."""

    __slots__ = ("first", "frame", "groups", "last", "records")

    def __init__(self, frame: Frame, records: list[Record]) -> None:
        self.first, self.last = frame.first_seq, frame.last_seq
        self.frame: Frame | None = frame
        self.records: list[Record] | None = records
        self.groups: list[HistoryGroup] | None = None


class RecentHistory:
    """Written frames that the stored index does not cover yet, held in memory with their
    records. Their index groups are built when a query (or the store, in this process)
    first needs them, not as frames arrive: the index of a stream of payments is mostly
    stored by a process of its own (`journal.indexer`) and never read from memory, and
    building it was a tenth of a coordinator's event loop. A query sorts each tag's rows
    twice, in seq order and in (id, seq) order, so that it reads only the rows it returns
    (plus those a second tag filters out)."""

    def __init__(self, event_source: str | None = None) -> None:
        self.event_source = event_source  # see history_groups
        self.held: list[_Held] = []  # oldest first
        self.bodies: dict[int, bytes] = {}  # frame first_seq -> body (queries cut records from it)
        self.by_seq: dict[str, list[HistoryRow]] = {}
        self.by_id: dict[str, list[HistoryRow]] = {}
        self._sorted_frames = 0  # held[:n] are in by_seq and by_id
        self.rows = 0  # journal positions held
        self.since = 0.0  # when the oldest position held arrived, on the event loop's clock

    def add(self, frame: Frame, records: list[Record]) -> None:
        if not self.rows:  # the loop's clock (monotonic), so a simulated loop's time rules it too
            self.since = asyncio.get_running_loop().time()
        self.held.append(_Held(frame, records))
        self.bodies[frame.first_seq] = frame.body
        self.rows += frame.last_seq - frame.first_seq + 1

    def _groups(self, held: _Held) -> list[HistoryGroup]:
        if held.groups is None:
            assert held.frame is not None and held.records is not None
            held.groups = history_groups(held.frame, held.records, self.event_source)
            held.frame = held.records = None  # the groups are all a query reads from now on
        return held.groups

    def _sort_in(self) -> None:
        """Put the rows of frames that arrived since the last query in both orders."""
        by_seq, by_id = self.by_seq, self.by_id
        for held in self.held[self._sorted_frames :]:
            # A frame's groups of one tag (one per id bucket) interleave in seq: sorted
            # here, the frame's rows extend by_seq in order, as frames arrive in order.
            for row in sorted(expand(self._groups(held)), key=_row_seq):
                by_seq.setdefault(row.tag, []).append(row)
                ids = by_id.setdefault(row.tag, [])
                if not ids or ids[-1].id <= row.id:  # ids are mostly time-ordered: appended
                    ids.append(row)
                else:
                    bisect.insort_right(ids, row, key=_row_id)
        self._sorted_frames = len(self.held)

    def all_groups(self) -> list[HistoryGroup]:
        return [g for held in self.held for g in self._groups(held)]

    def drop_through(self, seq: int) -> None:
        """Forget the frames up to `seq`, now in the stored index."""
        if not self.held or self.held[0].last > seq:
            return
        kept = [held for held in self.held if held.last > seq]  # arrived while the batch was being stored
        self.by_seq, self.by_id, self._sorted_frames = {}, {}, 0
        self.held, self.rows = kept, sum(held.last - held.first + 1 for held in kept)
        self.bodies = {held.first: self.bodies[held.first] for held in kept}
        if kept:
            self.since = asyncio.get_running_loop().time()  # (close enough: the store is due again in full)

    def _with_id(self, tag: str, some_id: str) -> list[HistoryRow]:
        """The rows of `tag` indexed under `some_id`, oldest first."""
        self._sort_in()
        rows = self.by_id.get(tag, [])
        lo = bisect.bisect_left(rows, some_id, key=_row_id)
        return rows[lo : bisect.bisect_right(rows, some_id, lo=lo, key=_row_id)]

    def cursor_seq(self, tag: str, some_id: str) -> int | None:
        """The first seq at which `some_id` is indexed under `tag`, if held here (each id
        is indexed once per tag, so it is either here or in the stored index)."""
        found = self._with_id(tag, some_id)
        return found[0].seq if found else None

    def _has(self, tag: str, some_id: str, seq: int) -> bool:
        return any(r.seq == seq for r in self._with_id(tag, some_id))

    def select(self, q: HistoryQuery) -> list[tuple[int, str, bytes]]:
        """(seq, id, record body) of the rows held that `q` asks for; the caller resolves a
        `before_id` cursor of a by-seq query into `before_seq` first."""
        assert not (q.by_seq and q.by_id_cursor), "resolve the cursor first"
        self._sort_in()
        if q.only_id is not None:
            candidates: Iterator[HistoryRow] = reversed(self._with_id(q.tag, q.only_id))
            if q.by_seq:  # one id's rows, few: in seq order
                candidates = iter(sorted(candidates, key=lambda r: r.seq, reverse=True))
        else:
            rows, low, high = (
                (self.by_seq.get(q.tag, []), q.after_seq, q.before_seq)
                if q.by_seq
                else (self.by_id.get(q.tag, []), q.after_id, q.before_id)
            )
            key = _row_seq if q.by_seq else _row_id
            start = 0 if low is None else bisect.bisect_right(rows, low, key=key)
            end = len(rows) if high is None else bisect.bisect_left(rows, high, key=key)
            span = range(start, end) if q.ascending else range(end - 1, start - 1, -1)
            candidates = (rows[i] for i in span)
        found: list[tuple[int, str, bytes]] = []
        for r in candidates:
            if len(found) >= q.limit:
                break
            if q.before_seq is not None and r.seq >= q.before_seq:
                continue
            if q.before_id is not None and r.id >= q.before_id:
                continue
            if q.after_seq is not None and r.seq <= q.after_seq:
                continue
            if q.after_id is not None and r.id <= q.after_id:
                continue
            if q.also_tag is not None and not self._has(q.also_tag, r.id, r.seq):
                continue
            found.append((r.seq, r.id, self.bodies[r.frame][r.offset : r.offset + r.length]))
        return found


_row_id = operator.attrgetter("id")
_row_seq = operator.attrgetter("seq")


def checked_records(codec: RecordCodec, frame: Frame, prev_seq: int, prev_hash: bytes | None) -> list[Record]:
    """The frame's records, once its place in the chain and its shape are checked
    (`prev_hash` None: the shape only, for frames whose chain was checked before)."""
    first, last = frame.first_seq, frame.last_seq
    if first != prev_seq + 1:
        raise JournalCorrupt(f"sequence gap: expected {prev_seq + 1}, found {first}")
    if prev_hash is not None and frame_hash(prev_hash, frame) != frame.hash:
        raise JournalCorrupt(f"hash chain broken at seq {first}")
    try:
        decoded = codec.decode_frame(frame.body)
    except msgspec.DecodeError as exc:
        raise JournalCorrupt(f"the frame at seq {first} does not decode: {exc}") from None
    seq = first
    for record in decoded:  # a batch knows its position: it must be where it is stored
        if isinstance(record, Batch) and (record.first_seq != seq or not record.width):
            raise JournalCorrupt(f"the frame at seq {first} holds a batch of seq {record.first_seq} at {seq}")
        seq += width(record)
    if not len(decoded) == len(frame.lens) or seq != last + 1:
        raise JournalCorrupt(f"the frame at seq {first} holds records to seq {seq - 1}, not {last}")
    return decoded


class Journal(abc.ABC):
    def __init__(
        self,
        *,
        batch_rows_max: int = 4096,
        history_rows_per_write: int = HISTORY_ROWS_PER_WRITE,
        history_rows_in_memory_max: int = HISTORY_ROWS_IN_MEMORY_MAX,
        history_write_after_s: float = HISTORY_WRITE_AFTER_S,
        history_elsewhere: bool = False,
    ) -> None:
        self.name = type(self).__name__  # adapters name their file; for logs
        self.codec = RecordCodec()
        self.batch_rows_max = batch_rows_max  # records per frame (one flush)
        self.last_seq = 0  # appended
        self.durable_seq = 0  # written
        self.indexed_seq = 0  # queryable in the history index (stored, or recent in memory)
        self.index_stored_seq = 0  # in the stored history index
        self.history_rows_per_write = history_rows_per_write
        self.history_rows_in_memory_max = history_rows_in_memory_max
        self.history_write_after_s = history_write_after_s
        # Another process stores the index (`journal.indexer`); this one learns how far it
        # got and forgets what is stored. It stores what it holds itself on close, and
        # whenever the other falls behind by three quarters of what memory may hold.
        self.history_elsewhere = history_elsewhere
        self._progress_read_at = 0.0
        self.writable = True
        self.flush_count = 0
        self._last_hash = GENESIS_HASH  # of the last sealed frame
        self._sealed_seq = 0  # records up to here are in frames (written or not)
        self._pending: list[Record] = []  # appended, not yet in a frame
        self._together: list[tuple[int, int]] = []  # (first, last) seqs pending that share a frame
        self._sealed: list[Sealed] = []  # frames not yet written (oldest first)
        self._recent = RecentHistory()  # index rows of frames from index_stored_seq to indexed_seq
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._index_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._wake: asyncio.Event | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._index_wake: asyncio.Event | None = None
        self._indexer: asyncio.Task[None] | None = None
        self._closed = False
        self._closing = False  # the indexer stores what it holds and stops
        self._loading = False
        self._index_broken: JournalCorrupt | None = None  # the stored frames cannot be indexed
        self.on_flush: Callable[[int, float], None] | None = None  # (records, seconds): metrics

    # -- adapter hooks ----------------------------------------------------------------
    @abc.abstractmethod
    def _read(self, from_genesis: bool) -> tuple[int, bytes, bytes | None, Iterator[Frame]]:
        """(snapshot_seq, hash at snapshot, snapshot body, frames in seq order from the one
        ending at the snapshot's seq); `from_genesis`: every frame from seq 1 (the snapshot
        is still returned)."""

    @abc.abstractmethod
    async def _write(self, frame: Frame) -> None:
        """Make `frame` durable atomically (all or none)."""

    @abc.abstractmethod
    async def _write_snapshot(self, seq: int, hash_: bytes, body: bytes) -> None: ...

    @abc.abstractmethod
    def _history_seq(self) -> int:
        """How far the stored history index reaches (0 if it is missing)."""

    @abc.abstractmethod
    async def _frames_after(self, seq: int, limit: int) -> list[Frame]:
        """Durable frames holding records after `seq`, oldest first (index catch-up)."""

    @abc.abstractmethod
    async def _write_history(self, groups: list[HistoryGroup], through_seq: int) -> None:
        """Add `groups` and record that the index now covers every record to `through_seq`."""

    async def _stored_progress(self) -> int:
        """How far the stored index reaches now (`history_elsewhere`: another process
        stores it). Adapters that support that mode answer it."""
        raise NotImplementedError

    def _index_elsewhere(self) -> None:
        """Have the process that stores this journal's index running (`history_elsewhere`)."""
        raise NotImplementedError

    @abc.abstractmethod
    async def _stored_cursor_seq(self, tag: str, some_id: str) -> int | None:
        """The first seq at which `some_id` is indexed under `tag` in the stored index."""

    @abc.abstractmethod
    async def _select(self, q: HistoryQuery) -> list[tuple[int, str, bytes]]:
        """(seq, id, record body) of what `q` asks for in the stored index."""

    async def _close(self) -> None:
        return None

    # -- recovery ---------------------------------------------------------------------
    def load(self, *, from_genesis: bool = False) -> Loaded:
        """Read the latest snapshot and the records after it, checking the chain.

        Synchronous so that an actor can rebuild its state inside `__init__`, before it
        serves any call. The snapshot's hash must be that of the frame ending at its seq
        (adapters return that frame first). `from_genesis` (audits) replays every record
        from the first and checks the snapshot's position in the chain on the way. Nothing
        may be appended before every record has been read.
        """
        snapshot_seq, snapshot_hash, snapshot, frames = self._read(from_genesis)
        self.last_seq = self.durable_seq = self._sealed_seq = 0
        self._last_hash = GENESIS_HASH
        self._loading = True
        if not from_genesis:
            self.indexed_seq = self.index_stored_seq = self._history_seq()

        def check_snapshot(frame: Frame) -> None:
            if (frame.last_seq, frame.hash) != (snapshot_seq, snapshot_hash):
                raise JournalCorrupt(f"the snapshot at seq {snapshot_seq} does not match the chain")

        def records() -> Iterator[StoredRecord]:
            anchored = from_genesis or snapshot_seq == 0
            for frame in frames:
                if not anchored:  # the frame the snapshot was taken at: vouches for its hash
                    check_snapshot(frame)
                    self.last_seq = self.durable_seq = self._sealed_seq = snapshot_seq
                    self._last_hash, anchored = snapshot_hash, True
                    continue
                decoded = self._checked(frame, self.last_seq, self._last_hash)
                if from_genesis and frame.first_seq <= snapshot_seq <= frame.last_seq:
                    check_snapshot(frame)
                self.last_seq = self.durable_seq = self._sealed_seq = frame.last_seq
                self._last_hash = frame.hash
                seq = frame.first_seq
                for record in decoded:
                    yield StoredRecord(seq, record)
                    seq += width(record)
            if not anchored or snapshot_seq > self.last_seq:
                raise JournalCorrupt(f"the snapshot at seq {snapshot_seq} is past the last record {self.last_seq}")
            self._loading = False

        return Loaded(snapshot_seq, snapshot, records())

    def _checked(self, frame: Frame, prev_seq: int, prev_hash: bytes | None) -> list[Record]:
        return checked_records(self.codec, frame, prev_seq, prev_hash)

    @property
    def event_source(self) -> str | None:
        """Set by a journal's owner, before it loads, if its records are API events (see
        `history_groups`); the three characters name the journal in event ids."""
        return self._recent.event_source

    @event_source.setter
    def event_source(self, source: str | None) -> None:
        assert source is None or len(source) == 3, "an event source is three characters"
        self._recent.event_source = source

    async def events(
        self,
        *,
        limit: int,
        before_id: str | None = None,
        after_id: str | None = None,
        event_type: str | None = None,
        ascending: bool = False,
    ) -> list[tuple[str, Record]]:
        """(event id, record) of the events here, newest first (or oldest first), ids
        strictly between the bounds."""
        assert self.event_source is not None
        tag = f"ev:{event_type}" if event_type else "ev"
        found = await self.tagged(tag, limit=limit, before_id=before_id, after_id=after_id, ascending=ascending)
        return [(self._event_id(s), s.record) for s in found]

    async def events_after(self, after_seq: int, limit: int) -> list[tuple[int, str, Record]]:
        """(seq, event id, record) of the events after `after_seq`, in journal order: what a
        stream resumes from (ids are in time order, which a later record may not follow)."""
        assert self.event_source is not None
        found = await self.tagged("ev", limit=limit, by_seq=True, after_seq=after_seq, ascending=True)
        return [(s.seq, self._event_id(s), s.record) for s in found]

    def _event_id(self, stored: StoredRecord) -> str:
        event = event_of(stored.record)
        assert event is not None and self.event_source is not None
        return event_id(event[1], self.event_source, stored.seq)

    # -- writing ----------------------------------------------------------------------
    def append(self, record: Record) -> int:
        """Queue `record`. Never refuses: callers check `writable` before starting new
        work, and what they already started (a decided payment's phase 2) must be
        recorded once the disk is back."""
        assert not self._closed, "append after close"
        assert not self._loading, "append before every stored record was loaded: its seq would be taken"
        assert not isinstance(record, Batch) or record.first_seq == self.last_seq + 1, "a batch's position"
        self._pending.append(record)
        self.last_seq += width(record)
        self._kick()
        return self.last_seq

    @property
    def next_seq(self) -> int:
        """The position the next record appended takes (a batch carries its own)."""
        return self.last_seq + 1

    def append_together(self, records: list[Record]) -> int:
        """Queue records that are durable all or none (a transfer's legs and its decision):
        they go in one frame, even past `batch_rows_max`. Returns the last one's seq."""
        first = self.last_seq + 1
        for record in records:
            self.append(record)
        if len(records) > 1:
            self._together.append((first, self.last_seq))
        return self.last_seq

    async def durable(self, seq: int | None = None) -> None:
        """Return once every record up to `seq` (default: all appended) is on disk."""
        target = self.last_seq if seq is None else seq
        if target <= self.durable_seq:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        self._kick()
        await future

    def _seal(self) -> None:
        """Close the next frame: pending records taking at most `batch_rows_max` positions
        (at least one record, however many it takes), unless that would split records
        appended together."""
        first = self._sealed_seq + 1
        if self.last_seq - self._sealed_seq <= self.batch_rows_max:
            last, count = self.last_seq, len(self._pending)
        else:  # at least one record, up to `batch_rows_max` positions, then to the end of a group
            last, count = self._sealed_seq, 0
            for record in self._pending:
                if count and last + width(record) - self._sealed_seq > self.batch_rows_max:
                    break
                last, count = last + width(record), count + 1
            group_end = max((g_last for g_first, g_last in self._together if g_first <= last < g_last), default=last)
            while last < group_end:
                last, count = last + width(self._pending[count]), count + 1
        self._together = [g for g in self._together if g[1] > last]
        records = self._pending[:count]
        del self._pending[:count]
        body, lens = self.codec.encode_frame(records)
        digest = chain_hash(self._last_hash, first, last, body, tuple(lens))
        self._sealed.append(Sealed(Frame(first, last, body, digest, tuple(lens)), records))
        self._sealed_seq, self._last_hash = last, digest

    def abandon(self) -> None:
        """Stop flushing at once, as a crash would: what is not yet written is lost (crash
        simulations in tests; a real stop calls `close`)."""
        if self._flusher is not None:
            self._flusher.cancel()

    def _kick(self) -> None:
        if self._flusher is None:
            self._wake = asyncio.Event()
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())
        assert self._wake is not None
        self._wake.set()

    async def _flush_loop(self) -> None:
        assert self._wake is not None
        retry_s = 0.01
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            while self._sealed or self._pending:
                if not self._sealed:  # everything queued while the last write was out
                    self._seal()
                sealed = self._sealed[0]
                started = time.perf_counter()
                try:
                    await self._write(sealed.frame)
                except Exception as exc:  # disk full, permissions, I/O error: keep the frame, retry
                    if self.writable:
                        log.error("journal_unwritable", extra={"fields": self._error_fields(exc)})
                    self.writable = False
                    await asyncio.sleep(retry_s)
                    retry_s = min(retry_s * 2, FLUSH_RETRY_S_MAX)
                    continue
                retry_s = 0.01
                if not self.writable:
                    log.warning("journal_writable_again", extra={"fields": {"journal": self.name}})
                self.writable = True
                del self._sealed[0]
                self.flush_count += 1
                self.durable_seq = sealed.frame.last_seq
                self._release(self._waiters, self.durable_seq)
                self._index_written(sealed)
                if self.on_flush is not None:
                    self.on_flush(len(sealed.records), time.perf_counter() - started)

    @staticmethod
    def _release(waiters: list[tuple[int, asyncio.Future[None]]], reached: int) -> None:
        still_waiting = []
        for target, future in waiters:
            if target <= reached:
                if not future.done():
                    future.set_result(None)
            else:
                still_waiting.append((target, future))
        waiters[:] = still_waiting

    @staticmethod
    def _fail(waiters: list[tuple[int, asyncio.Future[None]]], exc: Exception) -> None:
        for _, future in waiters:
            if not future.done():
                future.set_exception(exc)
        waiters.clear()

    def _error_fields(self, exc: Exception) -> dict[str, str]:
        return {"journal": self.name, "error": f"{type(exc).__name__}: {exc}"[:300]}

    # -- the history index --------------------------------------------------------------
    def _index_written(self, sealed: Sealed) -> None:
        """A frame just written is queryable at once if it continues the index and there is
        room in memory; otherwise the indexer reads it back later."""
        frame = sealed.frame
        if frame.last_seq <= self.indexed_seq:
            return  # stored by the other process already (history_elsewhere)
        if frame.first_seq != self.indexed_seq + 1 or self._recent.rows >= self.history_rows_in_memory_max:
            self._kick_indexer()
            return
        held_none = not self._recent.rows
        self._recent.add(frame, sealed.records)
        self.indexed_seq = frame.last_seq
        self._release(self._index_waiters, self.indexed_seq)
        if held_none or (self._recent.rows >= self.history_rows_per_write and not self._stored_elsewhere()):
            self._kick_indexer()  # to start its clock, or to store a full batch

    def _kick_indexer(self) -> None:
        if self._indexer is None:
            self._index_wake = asyncio.Event()
            self._indexer = asyncio.get_running_loop().create_task(self._index_loop())
        assert self._index_wake is not None
        self._index_wake.set()

    async def _index_loop(self) -> None:
        """Store the rows held in memory when enough have gathered, when the oldest has
        waited long enough, or on close; read frames the index does not cover yet back from
        the journal (after a restart, or while memory was full)."""
        assert self._index_wake is not None
        retry_s = 0.01
        try:
            while True:
                try:
                    worked = await self._index_step()
                except JournalCorrupt as exc:
                    self._index_broken = exc
                    log.error("history_corrupt", extra={"fields": {"journal": self.name, "error": str(exc)}})
                    return
                except Exception as exc:  # cannot write the index now: it lags, nothing is lost
                    if self._closing:
                        return  # the next open catches up from the frames
                    retry_s = await self._history_failed(exc, retry_s)
                    continue
                retry_s = 0.01
                if not worked:
                    if self._closing:
                        return
                    await self._index_sleep()
        finally:  # however the indexer ends, nobody is left waiting for it
            self._fail(self._index_waiters, self._index_broken or JournalUnavailable(f"{self.name}: indexing stopped"))

    async def _index_step(self) -> bool:
        """Do the next piece of the indexer's work; False if there is none yet."""
        behind = self.indexed_seq < self.durable_seq
        if behind and self._recent.rows < self.history_rows_in_memory_max:
            await self._catch_up()
            return True
        held = self.indexed_seq > self.index_stored_seq
        if self._stored_elsewhere():
            if not held or asyncio.get_running_loop().time() < self._progress_read_at + HISTORY_PROGRESS_READ_S:
                return False
            self._index_elsewhere()
            self._progress_read_at = asyncio.get_running_loop().time()
            stored = await self._stored_progress()
            if stored <= self.index_stored_seq:
                return False
            self.index_stored_seq = stored
            self.indexed_seq = max(self.indexed_seq, stored)
            self._recent.drop_through(stored)
            self._release(self._index_waiters, self.indexed_seq)
            return True
        waited = self._recent.rows and asyncio.get_running_loop().time() >= self._rows_due_at()
        if held and (self._closing or behind or waited or self._recent.rows >= self.history_rows_per_write):
            through = self.indexed_seq
            await self._write_history(self._recent.all_groups(), through)
            self.index_stored_seq = through
            self._recent.drop_through(through)
            return True
        return False

    def _stored_elsewhere(self) -> bool:
        """Whether the other process stores the index now: not on close, and not once it has
        fallen behind by three quarters of what memory may hold (a process that died or
        cannot keep up must not make queries wait: this one stores the rows, and the other,
        back, skips them)."""
        fallback = self.history_rows_in_memory_max * 3 // 4
        return self.history_elsewhere and not self._closing and self._recent.rows < fallback

    def _rows_due_at(self) -> float:
        """When the rows held must be stored. One sum, for the check and for the sleep: as
        `now - since >= after` and `since + after - now > 0`, float rounding once made both
        false at one instant, and the indexer slept for 0 s again and again."""
        return self._recent.since + self.history_write_after_s

    async def _index_sleep(self) -> None:
        assert self._index_wake is not None
        timeout = None
        now = asyncio.get_running_loop().time()
        if self._recent.rows and self._stored_elsewhere():  # read how far the other process got
            timeout = max(0.0, self._progress_read_at + HISTORY_PROGRESS_READ_S - now)
        elif self._recent.rows:  # wake when the oldest row held is due to be stored
            timeout = max(0.0, self._rows_due_at() - now)
        try:
            await asyncio.wait_for(self._index_wake.wait(), timeout)
        except TimeoutError:
            pass
        self._index_wake.clear()

    async def _catch_up(self) -> None:
        """Frames written before this process, or while memory was full: their chain was
        checked when written or replayed; their shape is checked here."""
        frames = await self._frames_after(self.indexed_seq, HISTORY_CATCH_UP_FRAMES)
        if not frames:
            raise JournalCorrupt(f"no frames after seq {self.indexed_seq} though {self.durable_seq} is durable")
        for frame in frames:
            self._recent.add(frame, self._checked(frame, self.indexed_seq, None))
            self.indexed_seq = frame.last_seq
            if self._recent.rows >= self.history_rows_in_memory_max:
                break  # the rest once these are stored
        self._release(self._index_waiters, self.indexed_seq)

    async def _history_failed(self, exc: Exception, retry_s: float) -> float:
        """Queries waiting for the index learn it now (503) instead of hanging; the
        index is retried with backoff (it only ever lags, nothing durable is lost)."""
        log.error("history_unwritable", extra={"fields": self._error_fields(exc)})
        self._fail(self._index_waiters, JournalUnavailable(f"the history index of {self.name} cannot be written"))
        await asyncio.sleep(retry_s)
        return min(retry_s * 2, FLUSH_RETRY_S_MAX)

    async def indexed(self) -> None:
        """Return once the history index covers every durable record."""
        target = self.durable_seq
        if target <= self.indexed_seq:
            return
        if self._index_broken is not None:
            raise self._index_broken
        if self._indexer is not None and self._indexer.done():
            raise JournalUnavailable(f"{self.name}: indexing stopped")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._index_waiters.append((target, future))
        self._kick_indexer()
        await future

    # -- reading history ------------------------------------------------------------------
    async def query(
        self, key: str, kind: str, *, limit: int = 100, before_seq: int | None = None
    ) -> list[StoredRecord]:
        """Durable records of `kind` indexed under `key` (see `record_tags`), newest first."""
        return await self._find(HistoryQuery(f"{kind}:{key}", limit, by_seq=True, before_seq=before_seq))

    async def tagged(
        self,
        tag: str,
        *,
        limit: int,
        before_id: str | None = None,
        also_tag: str | None = None,
        by_seq: bool = False,
        only_id: str | None = None,
        after_id: str | None = None,
        ascending: bool = False,
        before_seq: int | None = None,
        after_seq: int | None = None,
    ) -> list[StoredRecord]:
        """History by tag (see `ledger.records.record_tags`), for lists with cursors, or
        the records indexed under `only_id` (a payment by its id)."""
        q = HistoryQuery(tag, limit, before_id, also_tag, by_seq, before_seq, only_id, after_id, after_seq, ascending)
        return await self._find(q)

    async def events_after_encoded(self, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        """`events_after` as (seq, encoded record): the reader decodes (and names) them, so
        the journal's owner spends nothing per event on it (webhook delivery)."""
        q = HistoryQuery("ev", limit, by_seq=True, after_seq=after_seq, ascending=True)
        out = []
        at = _reading(self.codec)
        for seq, (_, body) in await self._found(q):
            if _is_indexed_batch(body):  # an item of a batch goes as the record it stands for
                body = self.codec.encode(at(body, seq))
            out.append((seq, body))
        return out

    async def _find(self, q: HistoryQuery) -> list[StoredRecord]:
        at = _reading(self.codec)
        return [StoredRecord(seq, at(body, seq)) for seq, (_, body) in await self._found(q)]

    async def _found(self, q: HistoryQuery) -> list[tuple[int, tuple[str, bytes]]]:
        """`q` over the rows held in memory and the stored index, in its order: (seq, (id,
        encoded record)). Memory is read first: a batch stored meanwhile is then seen twice
        (kept once), never missed."""
        await self.indexed()
        if q.by_seq and q.by_id_cursor:
            # A by-seq cursor is an id: its (first) seq bounds the page, held or stored.
            for field, bound in (("before", q.before_id), ("after", q.after_id)):
                if bound is not None:
                    cursor = self._recent.cursor_seq(q.tag, bound)
                    if cursor is None:
                        cursor = await self._stored_cursor_seq(q.tag, bound)
                    if cursor is None:
                        return []  # a cursor that was never indexed bounds nothing: an empty page
                    if field == "before":
                        tighter = cursor if q.before_seq is None else min(cursor, q.before_seq)
                        q = q._replace(before_id=None, before_seq=tighter)
                    else:
                        tighter = cursor if q.after_seq is None else max(cursor, q.after_seq)
                        q = q._replace(after_id=None, after_seq=tighter)
        recent = self._recent.select(q)
        found = {seq: (some_id, body) for seq, some_id, body in (*await self._select(q), *recent)}
        order = (
            sorted(found, reverse=not q.ascending)
            if q.by_seq
            else sorted(found, key=lambda s: (found[s][0], s), reverse=not q.ascending)
        )
        return [(seq, found[seq]) for seq in order[: q.limit]]

    def save_snapshot(self, body: bytes) -> Coroutine[None, None, int]:
        """Store `body` as the state after every record appended so far; returns its seq.

        Not a coroutine function on purpose: the position is captured at the call, right
        where the caller took `body` from its state, even if the returned coroutine runs
        later. The records pending are sealed into frames now, so the snapshot falls on a
        frame boundary and its hash is that frame's. It writes once they are durable.
        """
        while self._pending:
            self._seal()
        seq, hash_ = self._sealed_seq, self._last_hash
        self._kick()

        async def write() -> int:
            await self.durable(seq)
            await self._write_snapshot(seq, hash_, body)
            return seq

        return write()

    async def close(self) -> None:
        if self._pending or self._sealed:
            await self.durable()
        try:
            await self.indexed()  # so that a restart need not catch the index up
        except (JournalUnavailable, JournalCorrupt):
            pass  # the next open catches up from the frames (or reports them broken)
        self._closing = True  # the indexer stores what it holds (once) and stops
        if self._indexer is not None:
            assert self._index_wake is not None
            self._index_wake.set()
            await self._indexer
        self._closed = True
        if self._flusher is not None:
            assert self._wake is not None
            self._wake.set()
            await self._flusher
        await self._close()
