"""Conversion at a rate: rounding down never creates money, and a round trip through a
rate and its inverse loses at most rounding."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from ledger.fx import convert, pair_rate, rate_text

amounts = st.integers(0, 10**15)
exponents = st.integers(0, 8)
rates = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("100000"), places=6).map(rate_text)


@given(amounts, rates, exponents, exponents)
def test_conversion_rounds_down_by_less_than_one_minor_unit(amount: int, rate: str, e_from: int, e_to: int) -> None:
    out = convert(amount, rate, e_from, e_to)
    exact = Fraction(amount, 10**e_from) * Fraction(Decimal(rate))  # in major units of the target
    paid = Fraction(out, 10**e_to)
    assert paid <= exact < paid + Fraction(1, 10**e_to)


@given(amounts, rates, exponents, exponents)
def test_a_round_trip_through_the_inverse_rate_never_gains(amount: int, rate: str, e_from: int, e_to: int) -> None:
    there = pair_rate({("A", "B"): rate}, "A", "B")
    back = pair_rate({("A", "B"): rate}, "B", "A")
    assert there == rate and back is not None
    assert len(Decimal(back).normalize().as_tuple().digits) <= 12
    assert convert(convert(amount, there, e_from, e_to), back, e_to, e_from) <= amount


def test_worked_examples() -> None:
    assert convert(10_01, "0.8", 2, 2) == 8_00  # 8.008 EUR: the 0.008 stays with the provider
    assert convert(8_00, "1.25", 2, 2) == 10_00
    assert convert(1_00, "151.37", 2, 0) == 151  # USD cents to whole yen
    assert pair_rate({("EUR", "USD"): "1.25"}, "USD", "EUR") == "0.8"
    assert pair_rate({("EUR", "USD"): "3"}, "USD", "EUR") == "0.333333333333"
    assert pair_rate({}, "USD", "EUR") is None
