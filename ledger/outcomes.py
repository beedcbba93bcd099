"""What a coordinator answers about a payment, a transfer or a hold: the `Outcome` of a
call, and the records of payments not decided yet (pending) or just decided. The gateway,
its batcher and the client routing calls all speak these, so they live below them.
"""

from __future__ import annotations

import msgspec

from ledger.messages import PaymentRequest, TransferRequest
from ledger.records import HoldRecord, PaymentRecord, TransferLeg, TransferRecord
from ledger.results import PaymentStatus

ABORTED_IN_RECOVERY = "aborted_in_recovery"
# A payment a shard could not take part in: answered 503 (nothing moved, its key stays free
# for the retry), yet recorded, because a client told 202 already holds its id and polls it.
JOURNAL_UNAVAILABLE = "journal_unavailable"


class Outcome(msgspec.Struct, frozen=True, array_like=True):
    payment: PaymentRecord | None = None
    hold: HoldRecord | None = None
    replayed: bool = False  # an idempotency key answered with the first outcome
    conflict: bool = False  # the key was used before with a different request
    refused: str | None = None  # hold operations: not_found, not_held, amount_exceeds_hold;
    # refunds: not_refundable, refund_exceeds_payment
    transfer: TransferRecord | None = None


def undecided(record: PaymentRecord | TransferRecord | None) -> bool:
    """Not decided on its merits: a shard could not take part (ledger/payment_book.decide_payments)."""
    return record is None or record.reason == JOURNAL_UNAVAILABLE


def decided_outcome(record: PaymentRecord | TransferRecord | None) -> Outcome:
    if undecided(record):
        return Outcome(refused="unavailable")
    return Outcome(transfer=record) if isinstance(record, TransferRecord) else Outcome(record)


def is_transfer_id(some_id: str) -> bool:
    return some_id.startswith("tr_")


def pending_transfer(t: TransferRequest) -> TransferRecord:
    return TransferRecord(
        id=t.transfer_id,
        status=PaymentStatus.PENDING,
        reason=None,
        failed_leg=None,
        legs=[TransferLeg(r.payment_id, r.balance_from, r.balance_to, r.amount_minor, r.currency) for r in t.legs],
        created_at_ms=t.created_at_ms,
        settled_at_ms=None,
        description=t.description,
        metadata=t.metadata,
        idempotency_key=t.idempotency_key,
    )


def decided_record(
    r: PaymentRequest,
    status: PaymentStatus,
    reason: str | None,
    settled_at_ms: int | None,
    transfer: TransferRequest | None = None,
) -> PaymentRecord:
    """The record of `r` with its status; a transfer's leg takes its time, description,
    metadata and key-lessness from the transfer."""
    return PaymentRecord(
        id=r.payment_id,
        balance_from=r.balance_from,
        balance_to=r.balance_to,
        amount_minor=r.amount_minor,
        currency=r.currency,
        status=status,
        reason=reason,
        created_at_ms=r.created_at_ms if transfer is None else transfer.created_at_ms,
        settled_at_ms=settled_at_ms,
        description=r.description if transfer is None else transfer.description,
        metadata=r.metadata if transfer is None else transfer.metadata,
        idempotency_key=r.idempotency_key,
        fingerprint=r.fingerprint,
        refund_of=r.refund_of,
        transfer_id=None if transfer is None else transfer.transfer_id,
        fx=r.fx,
    )


def pending_record(r: PaymentRequest) -> PaymentRecord:
    return decided_record(r, PaymentStatus.PENDING, None, None)
