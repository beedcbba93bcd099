"""Result codes and payment statuses.

`Check` is ordered by precedence: when several checks fail for one payment (on either of
its two balances), the lowest value wins, so the reported reason never depends on which
shard answered first. The order is part of the API contract.
"""

from __future__ import annotations

import enum


class Check(enum.IntEnum):
    OK = 0
    BALANCE_NOT_FOUND = 1
    BALANCE_DISABLED = 2
    CURRENCIES_DONT_MATCH = 3
    NOT_ENOUGH_MONEY = 4
    AMOUNT_OVERFLOW = 5
    FENCED = 6  # a reserve from a coordinator incarnation that has since been replaced
    UNAVAILABLE = 7  # the owning shard could not be reached or could not journal


class PaymentStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCESS = "success"
    NOT_ENOUGH_MONEY = "not_enough_money"
    CURRENCIES_DONT_MATCH = "currencies_dont_match"
    BALANCE_DISABLED = "balance_disabled"
    SYSTEM_FAILURE = "system_failure"


FINAL_STATUSES = frozenset(PaymentStatus) - {PaymentStatus.PENDING}

_STATUS_OF_CHECK = {
    Check.OK: PaymentStatus.SUCCESS,
    Check.BALANCE_NOT_FOUND: PaymentStatus.SYSTEM_FAILURE,
    Check.BALANCE_DISABLED: PaymentStatus.BALANCE_DISABLED,
    Check.CURRENCIES_DONT_MATCH: PaymentStatus.CURRENCIES_DONT_MATCH,
    Check.NOT_ENOUGH_MONEY: PaymentStatus.NOT_ENOUGH_MONEY,
    Check.AMOUNT_OVERFLOW: PaymentStatus.SYSTEM_FAILURE,
    Check.FENCED: PaymentStatus.SYSTEM_FAILURE,
    Check.UNAVAILABLE: PaymentStatus.SYSTEM_FAILURE,
}


def decide(debit: Check, credit: Check) -> tuple[PaymentStatus, str | None]:
    """Both sides' checks -> the payment's final status and, for failures, the reason."""
    worst = Check(min((c for c in (debit, credit) if c != Check.OK), default=Check.OK))
    status = _STATUS_OF_CHECK[worst]
    reason = None if worst == Check.OK else worst.name.lower()
    return status, reason


def decide_legs(legs: list[tuple[Check, Check]]) -> tuple[PaymentStatus, str | None, int | None]:
    """A transfer's (status, reason, failed leg): success if every leg's two sides are,
    else the first failing leg's."""
    for n, (debit, credit) in enumerate(legs):
        status, reason = decide(debit, credit)
        if status != PaymentStatus.SUCCESS:
            return status, reason, n
    return PaymentStatus.SUCCESS, None, None
