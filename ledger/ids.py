"""Prefixed, time-ordered identifiers: `pay_01J...` (48-bit ms time + 80 random bits).

Time-ordered so that journals, lists and indexes stay roughly append-ordered; random so
that two gateways never collide. The clock and the random bytes are passed in.
"""

from __future__ import annotations

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


# Two characters per 10 bits: 13 table lookups per id instead of 26 divisions (an id is
# made for every payment, on the ingress's event loop).
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
_SHIFTS = range(120, -1, -10)


def make_id(prefix: str, now_ms: int, random_bytes: bytes) -> str:
    assert len(random_bytes) == 10, "an id carries 80 random bits"
    value = (now_ms & (2**48 - 1)) << 80 | int.from_bytes(random_bytes, "big")
    pairs = _PAIRS
    return prefix + "_" + "".join([pairs[(value >> shift) & 1023] for shift in _SHIFTS])


HOLD_PREFIX = "hold"  # an authorization hold's id; a payment's is "pay"


def is_hold_id(some_id: str) -> bool:
    """An authorization hold (open until captured, voided or expired), not a payment."""
    return some_id.startswith(HOLD_PREFIX + "_")
