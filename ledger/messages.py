"""Messages between gateway, coordinators and shards (msgspec Structs, picklable by Ray)."""

from __future__ import annotations

import functools
from collections.abc import Hashable
from typing import Any, TypeVar, cast

import msgspec

from ledger.records import FxQuote

T = TypeVar("T")


class PaymentQuery(msgspec.Struct, frozen=True, array_like=True):
    """A page of payments: by balance, status and idempotency key (each optional), with
    ids strictly between `after_id` and `before_id`; newest first, or oldest first when
    `ascending` (paging towards newer ones)."""

    limit: int
    balance_id: str | None = None
    status: str | None = None
    idempotency_key: str | None = None
    before_id: str | None = None
    after_id: str | None = None
    ascending: bool = False


class PaymentRequest(msgspec.Struct, frozen=True, array_like=True):
    payment_id: str
    balance_from: str
    balance_to: str
    amount_minor: int
    currency: str  # the paying balance's currency; the receiving side must match it
    created_at_ms: int
    description: str | None = None
    metadata: dict[str, str] | None = None
    idempotency_key: str | None = None  # scoped by the caller: "<principal>:<client key>"
    fingerprint: bytes | None = None  # of the request that first used the key
    refund_of: str | None = None  # the payment this one refunds (from its receiver to its payer)
    fx: FxQuote | None = None  # an exchange payment: the quote it uses (checked to match at the gateway)


class TransferRequest(msgspec.Struct, frozen=True, array_like=True):
    """Legs that move all or none. Each leg is a payment request with its own id (owned by
    the same coordinator as the transfer's) and no key: the transfer carries the key."""

    transfer_id: str
    legs: list[PaymentRequest]
    created_at_ms: int
    description: str | None = None
    metadata: dict[str, str] | None = None
    idempotency_key: str | None = None
    fingerprint: bytes | None = None

    @property
    def payment_id(self) -> str:  # what the ingress's batcher tracks a request by
        return self.transfer_id


class SideRequest(msgspec.Struct, frozen=True, array_like=True):
    """One leg of a payment sent to the shard owning `balance_id`."""

    payment_id: str
    balance_id: str
    amount_minor: int
    currency: str
    transfer_id: str | None = None  # a transfer's leg: kept on the hold, for recovery to abort it whole


class HoldRef(msgspec.Struct, frozen=True, array_like=True):
    payment_id: str
    balance_id: str
    amount_minor: int | None = None  # post only this much of the hold (a partial capture)
    hold_id: str | None = None  # the hold's key, when the posting payment has its own id
    capture_seq: int | None = None  # a partial post keeping the rest held (see BalanceBook.decide_post)


class BalanceSpec(msgspec.Struct, frozen=True, array_like=True):
    balance_id: str
    currency: str
    overdraft_limit_minor: int = 0
    unlimited: bool = False


class HoldRequest(msgspec.Struct, frozen=True, array_like=True):
    hold_id: str
    balance_from: str
    balance_to: str
    amount_minor: int
    currency: str
    created_at_ms: int
    expires_at_ms: int
    idempotency_key: str | None = None
    fingerprint: bytes | None = None
    description: str | None = None
    metadata: dict[str, str] | None = None


# -- between actors ------------------------------------------------------------------------
# A list of Structs passed to a Ray call is pickled one element at a time (cloudpickle per
# Struct: ~30% of a coordinator's CPU at 500 payments per call); one msgpack bytes object is
# handed over whole. Methods taking a batch accept either form, so plain in-process callers
# (tests) may still pass lists.
_encoder = msgspec.msgpack.Encoder()


@functools.cache
def _decoder(type_: Any) -> msgspec.msgpack.Decoder[Any]:
    return msgspec.msgpack.Decoder(type_)


def pack(items: Any) -> bytes:
    return _encoder.encode(items)


def unpack(data: bytes | T, type_: type[T]) -> T:
    """`data` decoded as `type_` if it was packed, else as it came."""
    return _decoder(cast(Hashable, type_)).decode(data) if isinstance(data, bytes) else data
