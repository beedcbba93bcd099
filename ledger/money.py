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


def example_amount(exponent: int) -> str:
    """An amount valid in a currency with `exponent` decimals, for error messages: "10",
    "10.5", "10.50", "10.500"..."""
    return "10" if exponent == 0 else "10." + "50".ljust(exponent, "0")[:exponent]


def parse_amount(text: object, exponent: int, *, allow_zero: bool = False, name: str = "amount") -> int:
    """Decimal string in major units -> positive int minor units, or AmountError (whose
    message calls the value `name` and gives an example valid in the currency)."""
    example = example_amount(exponent)
    if not isinstance(text, str):
        raise AmountError(f'{name} must be a decimal string, e.g. "{example}"')
    if len(text) > AMOUNT_TEXT_LEN_MAX:
        raise AmountError(f"{name} is too long")
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise AmountError(f'{name} must be a plain decimal string such as "{example}"')
    whole, fraction = match.group(1), match.group(2) or ""
    if match.group(2) is not None and fraction == "":
        raise AmountError(f"{name} has a trailing decimal point")
    if len(fraction) > exponent:
        if exponent == 0:
            raise AmountError(f'{name} must be a whole number such as "{example}": the currency has no decimals')
        raise AmountError(f'{name} has more than the currency\'s {exponent} decimal places (such as "{example}")')
    minor: int = int(whole) * 10**exponent + int(fraction.ljust(exponent, "0") or "0")
    if minor == 0 and not allow_zero:
        raise AmountError(f"{name} must be greater than zero")
    if minor > INT64_MAX:
        raise AmountError(f"{name} is too large")
    return minor


def format_amount(minor: int, exponent: int) -> str:
    """int minor units -> decimal string with exactly `exponent` decimals ("-1.25")."""
    sign = "-" if minor < 0 else ""
    digits = str(abs(minor)).rjust(exponent + 1, "0")
    if exponent == 0:
        return sign + digits
    return f"{sign}{digits[:-exponent]}.{digits[-exponent:]}"
