"""A journal frame is its records as one msgpack array: it decodes whole (replay), and each
record can be cut out of it by the lengths alone (history queries)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.records import Completed, Posted, Record, RecordCodec

CODEC = RecordCodec()

posted = st.builds(
    Posted,
    payment_id=st.text(max_size=30),
    balance_id=st.text(max_size=30),
    delta_minor=st.integers(-(2**63), 2**63 - 1),
    balance_after_minor=st.integers(-(2**63), 2**63 - 1),
    at_ms=st.integers(0, 2**53),
    hold_id=st.none() | st.text(max_size=30),
)
records = st.lists(posted | st.builds(Completed, payment_id=st.text(max_size=40)), max_size=40)


def assert_frame_round_trips(batch: list[Record]) -> None:
    body, lens = CODEC.encode_frame(batch)
    assert CODEC.decode_frame(body) == batch
    assert len(lens) == len(batch)
    offset = len(body) - sum(lens)  # the array header
    assert offset in (1, 3, 5)
    for record, length in zip(batch, lens, strict=True):
        assert CODEC.decode(body[offset : offset + length]) == record
        offset += length
    assert offset == len(body)


@given(records)
def test_a_frame_decodes_whole_and_record_by_record(batch: list[Record]) -> None:
    assert_frame_round_trips(batch)


@pytest.mark.parametrize("count", [0, 15, 16, 2**16 - 1, 2**16])  # each side of msgpack's header sizes
def test_frame_headers_at_their_size_boundaries(count: int) -> None:
    assert_frame_round_trips([Completed(f"pay_{n}") for n in range(count)])
