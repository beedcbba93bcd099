"""Currencies: ISO 4217 codes from the `iso4217` package plus admin-made custom ones.

The exponent (number of minor-unit digits) is what turns "10.50" into 1050; it comes from
the maintained ISO table, never from a hand-written one. ISO entries without a minor unit
(precious metals, SDR, test codes) cannot be held in a balance and are left out.
"""

from __future__ import annotations

import re
from functools import cache

import msgspec
from iso4217 import Currency as _Iso

CUSTOM_CODE = re.compile(r"[A-Z0-9]{3,12}")
CUSTOM_EXPONENT_MAX = 8


class CurrencyInfo(msgspec.Struct, frozen=True):
    code: str
    exponent: int
    name: str
    custom: bool = False


@cache
def iso_currencies() -> dict[str, CurrencyInfo]:
    return {
        c.code: CurrencyInfo(code=c.code, exponent=c.exponent, name=c.currency_name)
        for c in _Iso
        if c.exponent is not None
    }
