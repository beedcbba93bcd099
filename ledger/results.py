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


CHECKS = list(Check)  # by value: a code read off the wire without Check()'s own lookup


class PaymentStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCESS = "success"
    NOT_ENOUGH_MONEY = "not_enough_money"
    CURRENCIES_DONT_MATCH = "currencies_dont_match"
    BALANCE_DISABLED = "balance_disabled"
    SYSTEM_FAILURE = "system_failure"
    QUOTE_EXPIRED = "quote_expired"  # an exchange payment's quote expired or was used already
    NOT_ENOUGH_LIQUIDITY = "not_enough_liquidity"  # the FX liquidity balance paying out is short


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


def _decided(debit: Check, credit: Check) -> tuple[PaymentStatus, str | None]:
    worst = Check(min((c for c in (debit, credit) if c != Check.OK), default=Check.OK))
    status = _STATUS_OF_CHECK[worst]
    reason = None if worst == Check.OK else worst.name.lower()
    return status, reason


# Every pair worked out once: `decide` runs for every payment on the coordinator's loop.
_DECIDED = {(debit, credit): _decided(debit, credit) for debit in Check for credit in Check}


def decide(debit: Check, credit: Check) -> tuple[PaymentStatus, str | None]:
    """Both sides' checks -> the payment's final status and, for failures, the reason."""
    return _DECIDED[debit, credit]


def decide_fx(
    debit: Check, to_liquidity: Check, from_liquidity: Check, credit: Check
) -> tuple[PaymentStatus, str | None]:
    """An exchange payment's status from its four sides (payer, liquidity in the source
    currency, liquidity in the target currency, payee): the payer's and payee's checks
    first, then the liquidity paying out."""
    status, reason = decide(debit, credit)
    if status != PaymentStatus.SUCCESS:
        return status, reason
    if from_liquidity == Check.NOT_ENOUGH_MONEY:
        return PaymentStatus.NOT_ENOUGH_LIQUIDITY, "not_enough_liquidity"
    return decide(from_liquidity, to_liquidity)


def decide_legs(legs: list[tuple[PaymentStatus, str | None]]) -> tuple[PaymentStatus, str | None, int | None]:
    """A transfer's (status, reason, failed leg) from its legs' own: success if every leg
    succeeds, else the first failing leg's."""
    for n, (status, reason) in enumerate(legs):
        if status != PaymentStatus.SUCCESS:
            return status, reason, n
    return PaymentStatus.SUCCESS, None, None
