"""Internal records -> API bodies: money with the currency's full decimals, RFC 3339 times."""

from __future__ import annotations

import functools
from datetime import UTC, datetime

from ledger.book import BalanceView
from ledger.money import format_amount
from ledger.records import FxQuote, FxRateSet, HoldRecord, PaymentRecord, TransferRecord
from ledger.views import AccountInfo, BalanceInfo
from rayledger import schemas


@functools.lru_cache(maxsize=4096)
def _second(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat().replace("+00:00", "")


def timestamp(ms: int) -> str:
    """RFC 3339 in UTC with milliseconds. The second is formatted once and cached: a
    payment renders two of these, and datetime formatting was ~5% of the gateway's CPU."""
    epoch_s, milli = divmod(ms, 1000)
    return f"{_second(epoch_s)}.{milli:03d}Z"


def balance(info: BalanceInfo, view: BalanceView, exponent: int) -> schemas.Balance:
    return schemas.Balance(
        id=info.id,
        account_id=info.account_id,
        currency=info.currency,
        amount=format_amount(view.amount_minor, exponent),
        reserved=format_amount(view.reserved_minor, exponent),
        # An issuer balance may go as negative as the money issued: no limit, so null.
        available=format_amount(view.available_minor, exponent) if not view.unlimited else None,
        overdraft_limit=format_amount(view.overdraft_limit_minor, exponent) if not view.unlimited else None,
        # Disabled while its account is (its own status comes back when the account does).
        status="active" if view.active and view.account_active else "disabled",
        created_at=timestamp(info.created_at_ms),
    )


def account(info: AccountInfo, balances: list[schemas.Balance]) -> schemas.Account:
    return schemas.Account(
        id=info.id,
        email=info.email,
        status="active" if info.active else "disabled",
        created_at=timestamp(info.created_at_ms),
        balances=balances,
        metadata=info.metadata,
    )


def _shown_key(key: str | None, viewer: str | None) -> str | None:
    """`viewer`: whose Idempotency-Keys may be shown ("admin" or an account id); a key is
    shown to the caller who sent it only, never to the other side of the payment."""
    if key is None or viewer is None or not key.startswith(f"{viewer}:"):
        return None
    return key.split(":", 1)[1]


def transfer(t: TransferRecord, exponents: dict[str, int], viewer: str | None = None) -> schemas.Transfer:
    return schemas.Transfer(
        id=t.id,
        status=str(t.status),
        legs=[
            schemas.TransferLeg(
                leg.payment_id,
                leg.balance_from,
                leg.balance_to,
                format_amount(leg.amount_minor, exponents[leg.currency]),
                leg.currency,
            )
            for leg in t.legs
        ],
        created_at=timestamp(t.created_at_ms),
        failed_leg=t.failed_leg,
        reason=t.reason,
        settled_at=timestamp(t.settled_at_ms) if t.settled_at_ms is not None and t.status == "success" else None,
        decided_at=timestamp(t.settled_at_ms) if t.settled_at_ms is not None else None,
        description=t.description,
        metadata=t.metadata,
        idempotency_key=_shown_key(t.idempotency_key, viewer),
    )


def payment(p: PaymentRecord, exponent: int, viewer: str | None = None) -> schemas.Payment:
    shown_key = _shown_key(p.idempotency_key, viewer)
    decided_at = timestamp(p.settled_at_ms) if p.settled_at_ms is not None else None
    return schemas.Payment(
        id=p.id,
        balance_from=p.balance_from,
        balance_to=p.balance_to,
        amount=format_amount(p.amount_minor, exponent),
        currency=p.currency,
        status=str(p.status),
        reason=p.reason,
        created_at=timestamp(p.created_at_ms),
        # Only a payment that moved money was settled; a refusal was only decided.
        settled_at=decided_at if p.status == "success" else None,
        decided_at=decided_at,
        description=p.description,
        metadata=p.metadata,
        idempotency_key=shown_key,
        refund_of=p.refund_of,
        transfer_id=p.transfer_id,
        **({} if p.fx is None else _exchange(p.fx)),
    )


def _exchange(q: FxQuote) -> dict[str, str]:
    return {
        "quote_id": q.id,
        "rate": q.rate,
        "amount_to": format_amount(q.amount_to_minor, q.exponent_to),
        "currency_to": q.currency_to,
    }


def quote(q: FxQuote) -> schemas.FxQuote:
    return schemas.FxQuote(
        id=q.id,
        balance_from=q.balance_from,
        balance_to=q.balance_to,
        rate=q.rate,
        amount_from=format_amount(q.amount_from_minor, q.exponent_from),
        currency_from=q.currency_from,
        amount_to=format_amount(q.amount_to_minor, q.exponent_to),
        currency_to=q.currency_to,
        created_at=timestamp(q.created_at_ms),
        expires_at=timestamp(q.expires_at_ms),
    )


def hold(h: HoldRecord, exponent: int) -> schemas.Hold:
    return schemas.Hold(
        id=h.id,
        balance_from=h.balance_from,
        balance_to=h.balance_to,
        amount=format_amount(h.amount_minor, exponent),
        currency=h.currency,
        status=h.status,
        created_at=timestamp(h.created_at_ms),
        expires_at=timestamp(h.expires_at_ms),
        reason=h.reason,
        closed_at=timestamp(h.closed_at_ms) if h.closed_at_ms is not None else None,
        captured_amount=format_amount(h.captured_minor, exponent) if h.captured_minor is not None else None,
        payment_id=h.payment_id,
        captures=h.captures,
        description=h.description,
        metadata=h.metadata,
    )


def fx_rate(r: FxRateSet) -> schemas.FxRate:
    return schemas.FxRate(r.base, r.quote, r.rate, timestamp(r.at_ms))
