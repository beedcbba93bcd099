"""decide(): two sides' checks -> one payment status.

The lowest failing Check wins whichever side reported it, so the reason a client sees
never depends on which shard answered first.
"""

from __future__ import annotations

import itertools

import pytest

from ledger.results import FINAL_STATUSES, Check, PaymentStatus, decide

# The contract, written out rather than read back from the module under test.
STATUS_OF = {
    Check.OK: PaymentStatus.SUCCESS,
    Check.BALANCE_NOT_FOUND: PaymentStatus.SYSTEM_FAILURE,
    Check.BALANCE_DISABLED: PaymentStatus.BALANCE_DISABLED,
    Check.CURRENCIES_DONT_MATCH: PaymentStatus.CURRENCIES_DONT_MATCH,
    Check.NOT_ENOUGH_MONEY: PaymentStatus.NOT_ENOUGH_MONEY,
    Check.AMOUNT_OVERFLOW: PaymentStatus.SYSTEM_FAILURE,
    Check.FENCED: PaymentStatus.SYSTEM_FAILURE,
    Check.UNAVAILABLE: PaymentStatus.SYSTEM_FAILURE,
}
FAILURES = [c for c in Check if c != Check.OK]
PAIRS = list(itertools.product(Check, repeat=2))


def test_precedence_order_is_the_contract() -> None:
    assert list(Check) == [
        Check.OK,
        Check.BALANCE_NOT_FOUND,
        Check.BALANCE_DISABLED,
        Check.CURRENCIES_DONT_MATCH,
        Check.NOT_ENOUGH_MONEY,
        Check.AMOUNT_OVERFLOW,
        Check.FENCED,
        Check.UNAVAILABLE,
    ]
    assert [int(c) for c in Check] == list(range(len(Check)))


def test_ok_and_ok_is_success_without_reason() -> None:
    assert decide(Check.OK, Check.OK) == (PaymentStatus.SUCCESS, None)


@pytest.mark.parametrize("check", FAILURES, ids=lambda c: c.name)
def test_each_check_maps_to_its_status(check: Check) -> None:
    expected = (STATUS_OF[check], check.name.lower())
    assert decide(check, Check.OK) == expected
    assert decide(Check.OK, check) == expected
    assert decide(check, check) == expected


@pytest.mark.parametrize(("debit", "credit"), PAIRS, ids=lambda c: c.name)
def test_lowest_failing_check_wins_regardless_of_side(debit: Check, credit: Check) -> None:
    failing = [c for c in (debit, credit) if c != Check.OK]
    worst = min(failing, default=Check.OK)
    status, reason = decide(debit, credit)
    assert status == STATUS_OF[worst]
    assert reason == (None if worst == Check.OK else worst.name.lower())
    assert decide(credit, debit) == (status, reason)


def test_examples_of_precedence() -> None:
    assert decide(Check.NOT_ENOUGH_MONEY, Check.BALANCE_DISABLED) == (
        PaymentStatus.BALANCE_DISABLED,
        "balance_disabled",
    )
    assert decide(Check.CURRENCIES_DONT_MATCH, Check.NOT_ENOUGH_MONEY) == (
        PaymentStatus.CURRENCIES_DONT_MATCH,
        "currencies_dont_match",
    )
    # A system failure with a lower code beats a business rejection with a higher one ...
    assert decide(Check.NOT_ENOUGH_MONEY, Check.BALANCE_NOT_FOUND) == (
        PaymentStatus.SYSTEM_FAILURE,
        "balance_not_found",
    )
    # ... and a business rejection beats a later system failure.
    assert decide(Check.UNAVAILABLE, Check.NOT_ENOUGH_MONEY) == (
        PaymentStatus.NOT_ENOUGH_MONEY,
        "not_enough_money",
    )


@pytest.mark.parametrize(("debit", "credit"), PAIRS, ids=lambda c: c.name)
def test_decide_always_returns_a_final_status(debit: Check, credit: Check) -> None:
    status, reason = decide(debit, credit)
    assert status in FINAL_STATUSES
    assert (status == PaymentStatus.SUCCESS) == (reason is None)


def test_statuses_are_the_api_strings() -> None:
    assert {s.value for s in PaymentStatus} == {
        "pending",
        "success",
        "not_enough_money",
        "currencies_dont_match",
        "balance_disabled",
        "system_failure",
        "quote_expired",
        "not_enough_liquidity",
    }
    assert PaymentStatus.PENDING not in FINAL_STATUSES
    assert len(FINAL_STATUSES) == len(PaymentStatus) - 1
