"""Webhook rules without I/O: the retry schedule, the address rules, signatures."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.webhooks import RETRY_CAP_S, RETRY_FOR_S, address_refusal, next_attempt_ms
from rayledger.webhooks import signature, verify

DAY_MS = int(RETRY_FOR_S * 1000)


@given(st.integers(0, 2**40), st.floats(0.0, 0.999))
def test_first_retry_within_about_two_seconds(first_at: int, spread: float) -> None:
    due = next_attempt_ms(first_at, 1, first_at, spread)
    assert 1_600 <= due - first_at <= 2_000


@given(st.integers(1, 60), st.integers(0, DAY_MS))
def test_delay_doubles_up_to_an_hour_and_stops_after_a_day(attempt: int, elapsed: int) -> None:
    first_at = 10**12
    now = first_at + elapsed
    due = next_attempt_ms(first_at, attempt, now)
    if due == 0:
        expected = min(2.0 * 2 ** (attempt - 1), RETRY_CAP_S) * 1000
        assert now + expected > first_at + DAY_MS  # given up only when the next try would fall past the day
        return
    assert due <= first_at + DAY_MS
    delay = due - now
    assert delay <= RETRY_CAP_S * 1000
    following = next_attempt_ms(first_at, attempt + 1, now)
    assert following == 0 or following - now == min(2 * delay, int(RETRY_CAP_S * 1000))


@pytest.mark.parametrize(
    ("address", "private_allowed", "refused"),
    [
        ("169.254.169.254", True, "metadata"),
        ("fd00:ec2::254", True, "metadata"),
        ("100.100.100.200", True, "metadata"),
        ("169.254.10.1", True, "link-local"),
        ("fe80::1", True, "link-local"),
        ("::ffff:169.254.169.254", True, "metadata"),
        ("0.0.0.0", True, "unicast"),
        ("224.0.0.1", True, "unicast"),
        ("127.0.0.1", False, "private or loopback"),
        ("::1", False, "private or loopback"),
        ("10.1.2.3", False, "private or loopback"),
        ("192.168.1.1", False, "private or loopback"),
        ("::ffff:10.0.0.1", False, "private or loopback"),
        ("127.0.0.1", True, None),
        ("10.1.2.3", True, None),
        ("93.184.216.34", False, None),
        ("2606:2800:220:1:248:1893:25c8:1946", False, None),
    ],
)
def test_address_rules(address: str, private_allowed: bool, refused: str | None) -> None:
    reason = address_refusal(address, private_allowed)
    if refused is None:
        assert reason is None
    else:
        assert reason is not None and refused in reason


@given(st.binary(max_size=300), st.text(min_size=1, max_size=40))
def test_signature_verifies_only_the_same_body_secret_and_recent_time(body: bytes, secret: str) -> None:
    now = 1_800_000_000
    header = signature(secret, now, body)
    assert verify(secret, header, body, now_s=now + 10)
    assert not verify(secret + "x", header, body, now_s=now)
    assert not verify(secret, header, body + b"x", now_s=now)
    assert not verify(secret, header, body, now_s=now + 301)  # an old delivery replayed
    assert not verify(secret, header.replace("t=", "t=1"), body, now_s=now)
    assert not verify(secret, "v1=" + header.rpartition("v1=")[2], body, now_s=now)  # no time
