"""Currency exchange: converting amounts at a rate, rounding down.

A rate is a decimal string: 1 unit of `base` buys `rate` units of `quote`. Amounts stay
integers of minor units; a conversion is exact rational arithmetic, then rounded *down*
to the target currency's minor unit, so an exchange never pays out more than the rate
gives. The remainder stays with the FX liquidity balances (the provider's margin). A pair
with no rate of its own is converted at the inverse of the opposite pair's rate, itself
rounded down to RATE_DIGITS significant digits: a round trip at a rate and its inverse
loses at most rounding, never gains.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Context, Decimal
from fractions import Fraction

RATE_DIGITS = 12  # significant digits of a rate (API: "≤ 12 significant digits")
_INVERSE = Context(prec=RATE_DIGITS, rounding=ROUND_DOWN)


def rate_text(rate: Decimal) -> str:
    """A rate as a plain decimal string without exponent or trailing zeros ("0.8", "125")."""
    text = format(rate.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def pair_rate(rates: dict[tuple[str, str], str], source: str, target: str) -> str | None:
    """The rate a quote from `source` to `target` uses: the pair's own, else the inverse of
    the opposite pair's (rounded down), else None."""
    direct = rates.get((source, target))
    if direct is not None:
        return direct
    opposite = rates.get((target, source))
    if opposite is None:
        return None
    return rate_text(_INVERSE.divide(Decimal(1), Decimal(opposite)))


def convert(amount_minor: int, rate: str, exponent_from: int, exponent_to: int) -> int:
    """`amount_minor` of the source currency in minor units of the target, rounded down."""
    assert amount_minor >= 0
    exact = Fraction(amount_minor) * Fraction(Decimal(rate)) * Fraction(10) ** (exponent_to - exponent_from)
    return exact.numerator // exact.denominator
