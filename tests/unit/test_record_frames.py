"""A journal frame is its records as one msgpack array: it decodes whole (replay), and each
record can be cut out of it by the lengths alone (history queries)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.records import Completed, DecidedBatch, PaymentRecord, Posted, Record, RecordCodec, item_at

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


payments = st.builds(
    PaymentRecord,
    id=st.text(max_size=30),
    balance_from=st.text(max_size=30),
    balance_to=st.text(max_size=30),
    amount_minor=st.integers(0, 2**63 - 1),
    currency=st.sampled_from(["USD", "EUR", "JPY"]),
    status=st.sampled_from(["success", "not_enough_money"]),
    reason=st.none() | st.text(max_size=20),
    created_at_ms=st.integers(0, 2**53),
    settled_at_ms=st.none() | st.integers(0, 2**53),
    idempotency_key=st.none() | st.text(max_size=40),
)


@given(st.integers(1, 2**40), st.lists(payments, min_size=1, max_size=30), st.lists(posted, max_size=3))
def test_a_reader_gives_each_position_of_a_record_as_a_whole_decode_does(
    first_seq: int, decided: list[PaymentRecord], others: list[Posted]
) -> None:
    """A batch of decided payments is read item by item without decoding the rest; any
    record, batch or not, reads at each of its positions what `item_at` gives."""
    for record in [DecidedBatch(first_seq, decided), *others]:
        body = CODEC.encode(record)
        read = CODEC.reader(body)
        positions = range(first_seq, first_seq + len(decided)) if isinstance(record, DecidedBatch) else [first_seq]
        for seq in positions:
            assert read(seq) == item_at(CODEC.decode(body), seq)
