"""Prefixed, time-ordered identifiers: `pay_01J...` (48-bit ms time + 80 random bits).

Time-ordered so that journals, lists and indexes stay roughly append-ordered; random so
that two gateways never collide. The clock and the random bytes are passed in.
"""

from __future__ import annotations

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def make_id(prefix: str, now_ms: int, random_bytes: bytes) -> str:
    assert len(random_bytes) == 10, "an id carries 80 random bits"
    value = (now_ms & (2**48 - 1)) << 80 | int.from_bytes(random_bytes, "big")
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_CROCKFORD[digit])
    return f"{prefix}_{''.join(reversed(chars))}"


HOLD_PREFIX = "hold"  # an authorization hold's id; a payment's is "pay"


def is_hold_id(some_id: str) -> bool:
    """An authorization hold (open until captured, voided or expired), not a payment."""
    return some_id.startswith(HOLD_PREFIX + "_")
