"""make_id: `<prefix>_` + 26 Crockford base32 chars (48-bit ms time, then 80 random bits).

The contract that matters: ids from a later millisecond sort after ids from an earlier
one, whatever their random bytes, so journals and lists stay roughly append-ordered.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.ids import make_id

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
BODY_LEN = 26
TIME_MAX_MS = 2**48 - 1

PREFIXES = st.sampled_from(["acc", "bal", "pay", "key", "hold"])
TIMES_MS = st.integers(min_value=0, max_value=TIME_MAX_MS)
RANDOMS = st.binary(min_size=10, max_size=10)


def test_known_vectors() -> None:
    assert make_id("pay", 0, bytes(10)) == "pay_" + "0" * 26
    # The first 10 chars carry the time (50 bits, the top 2 always zero) ...
    assert make_id("pay", 1, bytes(10)) == "pay_" + "0" * 9 + "1" + "0" * 16
    assert make_id("pay", TIME_MAX_MS, bytes(10)) == "pay_7" + "Z" * 9 + "0" * 16
    # ... and the last 16 the random bits, big-endian.
    assert make_id("pay", 0, b"\xff" * 10) == "pay_" + "0" * 10 + "Z" * 16
    assert make_id("pay", 0, bytes(9) + b"\x01") == "pay_" + "0" * 25 + "1"


def test_crockford_alphabet_sorts_like_its_values() -> None:
    # Time ordering of ids relies on the alphabet being in ASCII order.
    assert list(CROCKFORD) == sorted(CROCKFORD)
    assert not set("ILOU") & set(CROCKFORD)


@settings(max_examples=200, deadline=None)
@given(prefix=PREFIXES, now_ms=TIMES_MS, random_bytes=RANDOMS)
def test_prefix_length_and_alphabet(prefix: str, now_ms: int, random_bytes: bytes) -> None:
    ident = make_id(prefix, now_ms, random_bytes)
    assert ident.startswith(prefix + "_")
    assert len(ident) == len(prefix) + 1 + BODY_LEN
    body = ident[len(prefix) + 1 :]
    assert set(body) <= set(CROCKFORD)
    # The body decodes back to exactly the time and random bits that went in.
    value = 0
    for char in body:
        value = value * 32 + CROCKFORD.index(char)
    assert value >> 80 == now_ms
    assert (value & (2**80 - 1)).to_bytes(10, "big") == random_bytes


@settings(max_examples=200, deadline=None)
@given(prefix=PREFIXES, times=st.lists(TIMES_MS, min_size=2, max_size=2, unique=True), r1=RANDOMS, r2=RANDOMS)
def test_later_millisecond_sorts_after_regardless_of_random_bytes(
    prefix: str, times: list[int], r1: bytes, r2: bytes
) -> None:
    early, late = sorted(times)
    assert make_id(prefix, early, r1) < make_id(prefix, late, r2)
    assert make_id(prefix, early, r2) < make_id(prefix, late, r1)


@settings(max_examples=200, deadline=None)
@given(prefix=PREFIXES, now_ms=TIMES_MS, randoms=st.lists(RANDOMS, min_size=2, max_size=2, unique=True))
def test_same_millisecond_orders_by_random_bytes_and_never_collides(
    prefix: str, now_ms: int, randoms: list[bytes]
) -> None:
    r1, r2 = randoms
    a, b = make_id(prefix, now_ms, r1), make_id(prefix, now_ms, r2)
    assert a != b
    assert (a < b) == (r1 < r2)


@settings(max_examples=200, deadline=None)
@given(prefix=PREFIXES, now_ms=TIMES_MS, random_bytes=RANDOMS)
def test_deterministic(prefix: str, now_ms: int, random_bytes: bytes) -> None:
    # The clock and the randomness are inputs: same inputs, same id.
    assert make_id(prefix, now_ms, random_bytes) == make_id(prefix, now_ms, random_bytes)


@pytest.mark.parametrize("size", [0, 1, 9, 11, 16])
def test_wrong_random_length_fails(size: int) -> None:
    with pytest.raises(AssertionError):
        make_id("pay", 1, bytes(size))
