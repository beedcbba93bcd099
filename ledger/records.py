"""Journal records: the only way state changes, live or on replay.

Each record is a tagged msgspec Struct encoded as a compact msgpack array. Evolution is
append-only: a new field goes last with a default, and a tag is never reused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import msgspec

from ledger.results import PaymentStatus

_opts = {"frozen": True, "array_like": True, "tag_field": "k", "forbid_unknown_fields": True}


# -- partition journals (BalanceShard) ------------------------------------------------
class BalanceOpened(msgspec.Struct, tag="bo", **_opts):
    balance_id: str
    currency: str
    overdraft_limit_minor: int
    unlimited: bool  # issuer balances may go negative without bound


class BalanceChanged(msgspec.Struct, tag="bc", **_opts):
    balance_id: str
    active: bool
    overdraft_limit_minor: int


class AccountActivity(msgspec.Struct, tag="aa", **_opts):
    """The owning account was disabled or re-enabled (kept apart from the balance's own
    status, so re-enabling the account restores each balance as it was)."""

    balance_id: str
    account_active: bool


class Reserved(msgspec.Struct, tag="rs", **_opts):
    """Escrow on the paying side: `reserved` grows, `available` shrinks."""

    payment_id: str
    balance_id: str
    amount_minor: int
    coordinator: int
    epoch: int
    transfer_id: str | None = None  # a transfer's leg (see SideRequest)


class Prepared(msgspec.Struct, tag="pr", **_opts):
    """The receiving side accepted the credit; nothing is visible until it is posted."""

    payment_id: str
    balance_id: str
    amount_minor: int
    coordinator: int
    epoch: int
    transfer_id: str | None = None


class Posted(msgspec.Struct, tag="po", **_opts):
    """The hold is released and `delta_minor` applied: the whole hold, or for a captured
    authorization possibly less (the rest of the hold is simply released)."""

    payment_id: str  # the payment this statement line belongs to
    balance_id: str
    delta_minor: int  # negative for the paying side
    balance_after_minor: int
    at_ms: int
    hold_id: str | None = None  # the hold's key when it differs from payment_id (captures)
    capture_seq: int | None = None  # a partial post that keeps the rest held: its place in order


class Voided(msgspec.Struct, tag="vo", **_opts):
    payment_id: str
    balance_id: str


class HeldBatch(msgspec.Struct, tag="hb", **_opts):
    """Phase one of a batch on one partition, one record for all its legs: each reserved
    (DEBIT, as `Reserved`) or prepared (CREDIT, as `Prepared`), applied in order. Like every
    batch it takes a journal position per item (`first_seq` the first one's), so that
    positions count the work a replay does and snapshots come as often as before."""

    first_seq: int
    coordinator: int
    epoch: int
    payment_ids: list[str]
    balance_ids: list[str]
    amounts: list[int]
    sides: bytes  # DEBIT (0) or CREDIT (1), one byte per leg
    transfer_ids: list[str | None] | None = None  # None: no leg of a transfer

    @property
    def width(self) -> int:
        return len(self.payment_ids)

    def item(self, n: int) -> Reserved | Prepared:
        kind = Reserved if self.sides[n] == 0 else Prepared
        transfer_id = None if self.transfer_ids is None else self.transfer_ids[n]
        return kind(
            self.payment_ids[n], self.balance_ids[n], self.amounts[n], self.coordinator, self.epoch, transfer_id
        )


class PostedBatch(msgspec.Struct, tag="pb", **_opts):
    """Whole posts of a batch on one partition (as `Posted` without a hold id), one record
    for all of them. Each post is a statement line with its own journal position:
    `first_seq` is the first post's, the record takes one position per post."""

    first_seq: int
    at_ms: int
    payment_ids: list[str]
    balance_ids: list[str]
    deltas: list[int]
    balances_after: list[int]

    @property
    def width(self) -> int:
        return len(self.payment_ids)

    def item(self, n: int) -> Posted:
        return Posted(self.payment_ids[n], self.balance_ids[n], self.deltas[n], self.balances_after[n], self.at_ms)


class VoidedBatch(msgspec.Struct, tag="vb", **_opts):
    """Voids of a batch on one partition (as `Voided`), one record for all of them, a
    journal position each (as `HeldBatch`)."""

    first_seq: int
    payment_ids: list[str]
    balance_ids: list[str]

    @property
    def width(self) -> int:
        return len(self.payment_ids)

    def item(self, n: int) -> Voided:
        return Voided(self.payment_ids[n], self.balance_ids[n])


class Fenced(msgspec.Struct, tag="fe", **_opts):
    """Reserves from `coordinator` with an older epoch are refused from here on."""

    coordinator: int
    epoch: int


# -- coordinator journals -------------------------------------------------------------
class EpochStarted(msgspec.Struct, tag="ep", **_opts):
    epoch: int


class FxQuote(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """A fixed exchange, usable once until `expires_at_ms`. An exchange payment moves
    `amount_from_minor` from its payer to `liquidity_from` and `amount_to_minor` from
    `liquidity_to` to its payee: both legs or neither."""

    id: str
    balance_from: str
    balance_to: str
    currency_from: str
    currency_to: str
    rate: str
    amount_from_minor: int
    amount_to_minor: int
    liquidity_from: str  # the FX account's balance in currency_from
    liquidity_to: str
    created_at_ms: int
    expires_at_ms: int
    exponent_from: int  # the currencies' minor-unit digits (fixed for a currency's life)
    exponent_to: int


class PaymentRecord(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    id: str
    balance_from: str
    balance_to: str
    amount_minor: int
    currency: str
    status: str
    reason: str | None
    created_at_ms: int
    settled_at_ms: int | None
    description: str | None = None
    metadata: dict[str, str] | None = None
    idempotency_key: str | None = None
    fingerprint: bytes | None = None
    hold_id: str | None = None  # set on the payment that captures a hold
    refund_of: str | None = None  # set on a refund: the payment it gives back (all or part of)
    transfer_id: str | None = None  # set on each leg of a transfer
    fx: FxQuote | None = None  # set on an exchange payment: the quote it used
    capture_seq: int | None = None  # a capture that keeps the rest of its hold held: which one


class TransferLeg(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    payment_id: str  # the leg's own payment record (statements show it with its transfer)
    balance_from: str
    balance_to: str
    amount_minor: int
    currency: str


class TransferRecord(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """Legs that move all or none: `status` is success, or the first failing leg's
    status (its index in `failed_leg`), which every leg then carries."""

    id: str
    status: str
    reason: str | None
    failed_leg: int | None
    legs: list[TransferLeg]
    created_at_ms: int
    settled_at_ms: int | None
    description: str | None = None
    metadata: dict[str, str] | None = None
    idempotency_key: str | None = None
    fingerprint: bytes | None = None


class HoldRecord(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """An authorization: the amount is reserved on `balance_from` (and the credit prepared
    on `balance_to`) until it is captured, voided or expires."""

    id: str
    balance_from: str
    balance_to: str
    amount_minor: int
    currency: str
    status: str  # held, captured, voided, expired, or the payment status that refused it
    reason: str | None
    created_at_ms: int
    expires_at_ms: int
    closed_at_ms: int | None = None
    captured_minor: int | None = None  # all captures together
    payment_id: str | None = None  # the capturing payment (the latest, if several)
    idempotency_key: str | None = None
    fingerprint: bytes | None = None
    description: str | None = None
    metadata: dict[str, str] | None = None
    captures: list[str] | None = None  # the capturing payments, oldest first


class HoldPlaced(msgspec.Struct, tag="hp", **_opts):
    """The decision to keep a hold open (or that it was refused): recovery must not
    presume it aborted."""

    hold: HoldRecord


class HoldClosed(msgspec.Struct, tag="hc", **_opts):
    """The hold's new state: captured (in part, still held, or finally), voided or expired;
    the commit point of that decision (a capture's payment is journaled in the same frame)."""

    hold: HoldRecord
    idempotency_key: str | None = None  # of the void request, if it had one
    fingerprint: bytes | None = None
    at_ms: int = 0  # when (a partial capture leaves the hold without a closed_at)


class Decided(msgspec.Struct, tag="de", **_opts):
    """The commit point of a payment: its final status is durable once this is."""

    payment: PaymentRecord


class DecidedBatch(msgspec.Struct, tag="db", **_opts):
    """The commit point of a batch of payments, one record for all of them: each is a
    `Decided` at its own journal position (`first_seq` is the first one's), so events,
    lookups and lists see each payment as if it were journaled alone."""

    first_seq: int
    payments: list[PaymentRecord]

    @property
    def width(self) -> int:
        return len(self.payments)

    def item(self, n: int) -> Decided:
        return Decided(self.payments[n])


class TransferDecided(msgspec.Struct, tag="td", **_opts):
    """A transfer's decision, journaled in one frame with the `Decided` of each of its
    legs (`Journal.append_together`): all its legs are decided, or none is."""

    transfer: TransferRecord


class Completed(msgspec.Struct, tag="cp", **_opts):
    """Phase 2 (post or void on both sides) is durable; recovery need not re-drive it."""

    payment_id: str


class Completions(msgspec.Struct, tag="cs", **_opts):
    """`Completed` for every payment a shard's confirmation completed at once: one record
    per confirmation instead of one per payment (they are off the critical path, but each
    record costs the coordinator an append, an encoding and a look at its history tags)."""

    payment_ids: list[str]


# -- registry journal -----------------------------------------------------------------
class Genesis(msgspec.Struct, tag="ge", **_opts):
    partitions: int
    created_at_ms: int


class AccountCreated(msgspec.Struct, tag="ac", **_opts):
    account_id: str
    email: str
    metadata: dict[str, str] | None
    created_at_ms: int


class AccountChanged(msgspec.Struct, tag="au", **_opts):
    account_id: str
    active: bool
    at_ms: int = 0


class AccountMetadataSet(msgspec.Struct, tag="am", **_opts):
    """An account's metadata replaced whole (None: it has none); the email never changes."""

    account_id: str
    metadata: dict[str, str] | None = None
    at_ms: int = 0


class BalanceCreated(msgspec.Struct, tag="bn", **_opts):
    balance_id: str
    account_id: str
    currency: str
    created_at_ms: int
    overdraft_limit_minor: int = 0


class BalanceChangeAsked(msgspec.Struct, tag="bq", **_opts):
    """A change of a balance's status or overdraft limit (None: left as it is), journaled
    before its shard makes it: after a crash in between, recovery asks the shard again (the
    change is idempotent) and journals what it did, so no change goes without its event."""

    balance_id: str
    active: bool | None
    overdraft_limit_minor: int | None
    at_ms: int


class BalanceUpdated(msgspec.Struct, tag="bu", **_opts):
    """What the shard did with the change asked last: the balance as it now is. It is the
    `balance.updated` event when something changed (not when refused or already so)."""

    balance_id: str
    account_id: str
    currency: str
    changed: bool
    active: bool
    overdraft_limit_minor: int
    at_ms: int


class BalanceReady(msgspec.Struct, tag="br", **_opts):
    """The owning shard has journaled the balance; until then creation is re-driven."""

    balance_id: str


class CurrencyCreated(msgspec.Struct, tag="cc", **_opts):
    code: str
    exponent: int
    name: str


class KeyCreated(msgspec.Struct, tag="kc", **_opts):
    """An account API key; only a hash of its token is ever stored."""

    key_id: str
    account_id: str
    token_hash: bytes
    created_at_ms: int
    prefix: str | None = None  # the token's first characters, for people to tell keys apart


class KeyRevoked(msgspec.Struct, tag="kr", **_opts):
    key_id: str


class FxRateSet(msgspec.Struct, tag="fx", **_opts):
    """A currency pair's rate: 1 `base` buys `rate` `quote` (a decimal string, never a float)."""

    base: str
    quote: str
    rate: str
    at_ms: int


class FxQuoted(msgspec.Struct, tag="fq", **_opts):
    quote: FxQuote


class FxQuoteUsed(msgspec.Struct, tag="fu", **_opts):
    """Journaled before the payment that uses the quote is decided: a quote is used once."""

    quote_id: str
    payment_id: str


class FxQuoteReleased(msgspec.Struct, tag="fr", **_opts):
    """The payment that used the quote was aborted undecided (answered 503): its retry may use it."""

    quote_id: str
    payment_id: str


class Answered(msgspec.Struct, tag="an", **_opts):
    """A create (account, balance, currency, API key) made with an Idempotency-Key: what a
    retry replays. `lookup` is a hash of the caller-scoped key, never the key itself; an API
    key's token is kept only `sealed` under the Idempotency-Key (gateway.idempotency)."""

    lookup: bytes
    fingerprint: bytes
    kind: str  # "account" | "balance" | "currency" | "key" | "batch" (a batch claimed whole)
    ref: str  # the created object's id (a currency's code)
    at_ms: int
    amount_minor: int = 0  # a balance's first overdraft limit
    sealed: bytes | None = None
    refusals: bytes | None = None  # a batch's: the items refused before running, as the gateway encoded them


class WebhookEndpointCreated(msgspec.Struct, tag="we", **_opts):
    """A webhook endpoint (journal of the webhooks actor). The secret signs every delivery;
    the API shows it once, at creation. It is journaled only `sealed_secret` (XOR with an
    HMAC of the endpoint id under the data directory's own key, actors.webhooks): endpoints
    made before it keep theirs in `secret`, as they were written."""

    endpoint_id: str
    url: str
    events: list[str]
    secret: str
    created_at_ms: int
    positions: dict[str, int]  # each event journal's last position at creation: it gets the events after
    description: str | None = None
    idem_lookup: bytes | None = None  # the Idempotency-Key it was made with, as `actors.registry.Idem` has it
    idem_fingerprint: bytes | None = None
    sealed_secret: bytes | None = None


class WebhookEndpointDeleted(msgspec.Struct, tag="wx", **_opts):
    endpoint_id: str
    at_ms: int


class DeliveryAttempted(msgspec.Struct, tag="wa", **_opts):
    """One POST of an event to an endpoint and what came of it. `next_at_ms` 0: settled
    (delivered, or given up after the retry period); else when it is tried again."""

    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    source: str  # the event's journal and position there: where a retry reads it again
    seq: int
    attempt: int
    first_at_ms: int
    at_ms: int
    status_code: int  # 0: no HTTP answer
    error: str | None
    next_at_ms: int
    duration_ms: int = 0


class DeliveryProgress(msgspec.Struct, tag="wp", **_opts):
    """Every event of the endpoint's up to `positions` was delivered, or its retry is
    journaled before this record: after a crash delivery resumes from here (events past it
    may go twice: at least once)."""

    endpoint_id: str
    positions: dict[str, int]


Record = (
    BalanceOpened
    | BalanceChanged
    | AccountActivity
    | Reserved
    | Prepared
    | Posted
    | Voided
    | HeldBatch
    | PostedBatch
    | VoidedBatch
    | Fenced
    | EpochStarted
    | Decided
    | DecidedBatch
    | TransferDecided
    | Completed
    | Completions
    | HoldPlaced
    | HoldClosed
    | Genesis
    | AccountCreated
    | AccountChanged
    | BalanceCreated
    | BalanceChangeAsked
    | BalanceUpdated
    | BalanceReady
    | CurrencyCreated
    | KeyCreated
    | KeyRevoked
    | Answered
    | FxRateSet
    | FxQuoted
    | FxQuoteUsed
    | FxQuoteReleased
    | WebhookEndpointCreated
    | WebhookEndpointDeleted
    | DeliveryAttempted
    | DeliveryProgress
    | AccountMetadataSet
)


# Bump when `record_tags` changes: a stored history index made under another version is
# dropped and rebuilt from its journal (2: holds by balance and all together, for GET /v1/holds;
# 3: refunds by the payment they refund; 4: transfers; 5: events; 6: stored as groups by id
# bucket: bump it too when journal.base's BUCKET_LEN or EVENT_BUCKET_LEN changes, and an
# older version reading a newer index rebuilds it rather than find nothing).
RECORD_TAGS_VERSION = 6


_STATUS_TAGS = {str(s): f"s:{s}" for s in PaymentStatus}


Batch = HeldBatch | PostedBatch | VoidedBatch | DecidedBatch  # records that take one journal position per item


def width(record: Record) -> int:
    """The journal positions a record takes: one, or one per item of a batch."""
    return record.width if isinstance(record, Batch) else 1


def item_at(record: Record, seq: int) -> Record:
    """What the journal position `seq` holds: the record stored there, or the item of a
    batch there (as the record it stands for)."""
    return record.item(seq - record.first_seq) if isinstance(record, Batch) else record


def record_tags(record: Record) -> tuple[str, tuple[str, ...]] | None:
    """(id, tags) under which history queries find a record: payments all together (and
    by id, under "pay"), by balance, status and idempotency key; transfers all together
    (and by id, under "tr") and by balance; holds by id and key; webhook deliveries by
    endpoint; statement entries by balance (`<kind>:<key>` is what `Journal.query(key,
    kind)` looks up). The id orders and pages the results."""
    if isinstance(record, Decided):  # most records of a coordinator: kept lean
        return record.payment.id, payment_tags(record.payment)
    if isinstance(record, TransferDecided):
        t, key = record.transfer, record.transfer.idempotency_key
        balances = dict.fromkeys(b for leg in t.legs for b in (leg.balance_from, leg.balance_to))
        return t.id, ("tr", *(f"tb:{b}" for b in balances), *((f"k:{key}",) if key is not None else ()))
    if isinstance(record, HoldPlaced):
        h, key = record.hold, record.hold.idempotency_key
        sides = [f"hb:{b}" for b in dict.fromkeys((h.balance_from, h.balance_to))]
        return h.id, (f"hp:{h.id}", "holds", *sides, *((f"k:{key}",) if key is not None else ()))
    if isinstance(record, HoldClosed):
        key = record.idempotency_key
        return record.hold.id, (f"hc:{record.hold.id}", *((f"k:{key}",) if key is not None else ()))
    if isinstance(record, Posted):
        return record.payment_id, (f"po:{record.balance_id}",)
    if isinstance(record, DeliveryAttempted):
        return record.id, (f"wd:{record.endpoint_id}",)
    return None


class _DecidedItems(msgspec.Struct, tag="db", **_opts):
    """A `DecidedBatch` with its payments left encoded (`RecordCodec.reader`)."""

    first_seq: int
    payments: list[msgspec.Raw]


_DECIDED_BATCH_TAG = msgspec.msgpack.encode(DecidedBatch(1, []))[1:4]  # after the array header, as `_BATCH_TAGS`


class RecordCodec:
    """Encoder/decoder pair; build one per process (msgspec codecs are not picklable)."""

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(Record)
        self._frame_decoder = msgspec.msgpack.Decoder(list[Record])
        self._decided_items = msgspec.msgpack.Decoder(_DecidedItems)
        self._payment = msgspec.msgpack.Decoder(PaymentRecord)

    def encode(self, record: Record) -> bytes:
        return self._encoder.encode(record)

    def decode(self, body: bytes) -> Record:
        return self._decoder.decode(body)

    def encode_frame(self, records: list[Record]) -> tuple[bytes, list[int]]:
        """Records as one msgpack array, and each record's encoded length: the array is
        decoded whole on replay, and one record can be cut out of it for a query."""
        parts = [self._encoder.encode(r) for r in records]
        return self._encoder.encode([msgspec.Raw(b) for b in parts]), [len(b) for b in parts]

    def decode_frame(self, body: bytes) -> list[Record]:
        return self._frame_decoder.decode(body)

    def reader(self, body: bytes) -> Callable[[int], Record]:
        """What each position of an encoded record holds (`item_at`), by position. A batch
        of decided payments is read as raw items, and only those asked for are decoded: a
        page of a balance's payments takes one from each of twenty batches of hundreds
        (whole, ~0.2 ms each to decode; one item, ~0.04 ms)."""
        if body[1:4] != _DECIDED_BATCH_TAG:
            record = self._decoder.decode(body)
            return lambda seq: item_at(record, seq)
        items = self._decided_items.decode(body)
        return lambda seq: Decided(self._payment.decode(items.payments[seq - items.first_seq]))


class Moves(Protocol):
    """A payment request or record: what it moves."""

    @property
    def balance_from(self) -> str: ...
    @property
    def balance_to(self) -> str: ...
    @property
    def amount_minor(self) -> int: ...
    @property
    def currency(self) -> str: ...
    @property
    def fx(self) -> FxQuote | None: ...


def payment_sides(p: Moves) -> list[tuple[str, str, int, str]]:
    """(from, to, amount, currency) of each pair of holds a payment moves through: one, or
    for an exchange payment two (payer -> liquidity, liquidity -> payee), all under its id."""
    if p.fx is None:
        return [(p.balance_from, p.balance_to, p.amount_minor, p.currency)]
    q = p.fx
    return [
        (p.balance_from, q.liquidity_from, p.amount_minor, p.currency),
        (q.liquidity_to, p.balance_to, q.amount_to_minor, q.currency_to),
    ]


def payment_balances(p: Moves) -> list[str]:
    """The balances a payment holds on (the payer first)."""
    return [b for side in payment_sides(p) for b in side[:2] if b]


def payment_tags(p: PaymentRecord) -> tuple[str, ...]:
    """What a decided payment is indexed under (`record_tags`)."""
    tags = ["pay", _STATUS_TAGS.get(p.status) or f"s:{p.status}"]
    if p.balance_from:
        tags.append("b:" + p.balance_from)
    if p.balance_to and p.balance_to != p.balance_from:
        tags.append("b:" + p.balance_to)
    if p.idempotency_key is not None:
        tags.append(f"k:{p.idempotency_key}")
    if p.refund_of is not None:
        tags.append(f"rf:{p.refund_of}")
    return tuple(tags)


def payment_event(p: PaymentRecord) -> tuple[str, int] | None:
    """The event a decided payment is (`event_of`)."""
    if p.transfer_id is not None:
        return None
    return _PAYMENT_EVENTS[p.refund_of is not None, p.status == "success"], p.settled_at_ms or p.created_at_ms


_PAYMENT_EVENTS = {
    (refund, succeeded): f"{'refund' if refund else 'payment'}.{'succeeded' if succeeded else 'failed'}"
    for refund in (False, True)
    for succeeded in (False, True)
}


def event_of(record: Record) -> tuple[str, int] | None:
    """(type, time in ms) of the API event a record is, if it is one (API "Events"). A
    transfer's legs are its event, not their own; a capture is a payment like any other."""
    if isinstance(record, Decided):
        return payment_event(record.payment)
    if isinstance(record, TransferDecided):
        t = record.transfer
        return f"transfer.{'succeeded' if t.status == 'success' else 'failed'}", t.settled_at_ms or t.created_at_ms
    if isinstance(record, HoldPlaced):
        return "hold.created", record.hold.created_at_ms
    if isinstance(record, HoldClosed):
        kind = {"voided": "hold.voided", "expired": "hold.expired"}.get(record.hold.status, "hold.captured")
        return kind, record.at_ms or record.hold.closed_at_ms or record.hold.created_at_ms
    if isinstance(record, AccountCreated):
        return "account.created", record.created_at_ms
    if isinstance(record, AccountChanged | AccountMetadataSet):
        return "account.updated", record.at_ms
    if isinstance(record, BalanceCreated):
        return "balance.created", record.created_at_ms
    if isinstance(record, BalanceUpdated):
        return ("balance.updated", record.at_ms) if record.changed else None
    if isinstance(record, FxRateSet):
        return "fx_rate.updated", record.at_ms
    return None


def event_id(time_ms: int, source: str, seq: int) -> str:
    """Ordered by time, then journal, then position: a list of events from several journals
    pages by id. `source` names the journal in three characters (c00, r00)."""
    return f"evt_{time_ms:013d}{source}{seq:012d}"


EVENT_ID_PATTERN = r"^evt_[0-9]{13}[a-z][0-9]{2}[0-9]{12}$"


def event_seq(some_id: str) -> int:
    """The journal position an event id carries."""
    return int(some_id[-12:])


EVENT_TYPES = (
    "account.created",
    "account.updated",
    "balance.created",
    "balance.updated",
    "payment.succeeded",
    "payment.failed",
    "transfer.succeeded",
    "transfer.failed",
    "refund.succeeded",
    "refund.failed",
    "hold.created",
    "hold.captured",
    "hold.voided",
    "hold.expired",
    "fx_rate.updated",
)
