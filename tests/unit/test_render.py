"""API timestamps: RFC 3339, UTC, milliseconds, exactly as datetime would write them."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from api.render import timestamp


@given(st.integers(min_value=0, max_value=253_402_300_799_999))  # up to 9999-12-31T23:59:59.999Z
def test_timestamp_matches_datetime(ms: int) -> None:
    expected = datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=ms % 1000 * 1000)
    assert timestamp(ms) == expected.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_timestamp_examples() -> None:
    assert timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert timestamp(1_795_664_431_272) == "2026-11-26T03:40:31.272Z"
