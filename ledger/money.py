"""Money as int64 minor units; decimal strings only at the edges.

A client sends amounts as decimal strings in major units ("10.50"); floats never enter.
Parsing is strict on purpose: a payments API that guesses what "1e3" or "10.505" meant
moves the wrong amount of money.
"""

from __future__ import annotations

import re

INT64_MAX = 2**63 - 1

_AMOUNT = re.compile(r"(0|[1-9][0-9]*)(?:\.([0-9]+))?")
# Long digit strings are refused before int() is asked to convert them.
AMOUNT_TEXT_LEN_MAX = 40


class AmountError(ValueError):
    """The text is not a valid positive amount for the currency."""


def parse_amount(text: object, exponent: int, *, allow_zero: bool = False) -> int:
    """Decimal string in major units -> positive int minor units, or AmountError."""
    if not isinstance(text, str):
        raise AmountError('amount must be a decimal string, e.g. "10.50"')
    if len(text) > AMOUNT_TEXT_LEN_MAX:
        raise AmountError("amount is too long")
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise AmountError('amount must be a plain decimal string such as "10.50"')
    whole, fraction = match.group(1), match.group(2) or ""
    if match.group(2) is not None and fraction == "":
        raise AmountError("amount has a trailing decimal point")
    if len(fraction) > exponent:
        raise AmountError(f"amount has more than {exponent} decimal places")
    minor = int(whole) * 10**exponent + int(fraction.ljust(exponent, "0") or "0")
    if minor == 0 and not allow_zero:
        raise AmountError("amount must be greater than zero")
    if minor > INT64_MAX:
        raise AmountError("amount is too large")
    return minor


def format_amount(minor: int, exponent: int) -> str:
    """int minor units -> decimal string with exactly `exponent` decimals ("-1.25")."""
    sign = "-" if minor < 0 else ""
    digits = str(abs(minor)).rjust(exponent + 1, "0")
    if exponent == 0:
        return sign + digits
    return f"{sign}{digits[:-exponent]}.{digits[-exponent:]}"
