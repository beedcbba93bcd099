"""The dashboard's payments per minute (ledger.activity): per minute, what was decided then;
only the last hour is kept; several coordinators' minutes add up."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ledger.activity import MINUTE_MS, WINDOW_MINUTES, Activity, Minute, merged
from ledger.records import PaymentRecord
from ledger.results import PaymentStatus

T0 = 1_796_220_000_000 - 1_796_220_000_000 % MINUTE_MS
decisions = st.lists(
    st.tuples(
        st.integers(0, 3 * WINDOW_MINUTES * MINUTE_MS),  # when, after T0
        st.sampled_from([PaymentStatus.SUCCESS, PaymentStatus.NOT_ENOUGH_MONEY, PaymentStatus.PENDING]),
        st.sampled_from(["USD", "EUR", "JPY"]),
        st.integers(1, 10**12),
    ),
    max_size=60,
)


def record(n: int, at: int, status: str, currency: str, amount: int) -> PaymentRecord:
    settled = None if status == PaymentStatus.PENDING else T0 + at
    return PaymentRecord(f"pay_{n}", "bal_a", "bal_b", amount, currency, status, None, T0 + at, settled)


@given(decisions)
def test_each_minute_counts_what_was_decided_in_it_within_the_last_hour(made: list) -> None:
    activity = Activity()
    for n, decision in enumerate(made):
        activity.add(record(n, *decision))
    kept = activity.minutes()
    assert [m.start_ms for m in kept] == sorted({m.start_ms for m in kept})
    if not kept:
        assert all(status == PaymentStatus.PENDING for _, status, _, _ in made)
        return
    newest = kept[-1].start_ms
    assert newest - kept[0].start_ms < WINDOW_MINUTES * MINUTE_MS
    for m in kept:
        # A decision in a kept minute is counted unless it came after that minute had
        # left the window of a newer decision (replay order): never more than was made.
        in_minute = [d for d in made if T0 + d[0] - (T0 + d[0]) % MINUTE_MS == m.start_ms]
        decided = [d for d in in_minute if d[1] != PaymentStatus.PENDING]
        assert m.succeeded + m.failed <= len(decided)
        assert m.succeeded <= sum(1 for d in decided if d[1] == PaymentStatus.SUCCESS)
        for currency, volume in m.volume.items():
            assert volume <= sum(d[3] for d in decided if d[1] == PaymentStatus.SUCCESS and d[2] == currency)


@given(decisions)
def test_in_time_order_every_decision_of_the_last_hour_is_counted_exactly(made: list) -> None:
    activity = Activity()
    ordered = sorted(made, key=lambda d: d[0])
    for n, decision in enumerate(ordered):
        activity.add(record(n, *decision))
    decided = [d for d in ordered if d[1] != PaymentStatus.PENDING]
    if not decided:
        assert activity.minutes() == []
        return
    newest = T0 + decided[-1][0]
    since = newest - newest % MINUTE_MS - (WINDOW_MINUTES - 1) * MINUTE_MS
    recent = [d for d in decided if T0 + d[0] >= since]
    kept = activity.minutes()
    assert sum(m.succeeded + m.failed for m in kept) == len(recent)
    usd = sum(d[3] for d in recent if d[1] == PaymentStatus.SUCCESS and d[2] == "USD")
    assert sum(m.volume.get("USD", 0) for m in kept) == usd
    assert activity.minutes(now_ms=newest + WINDOW_MINUTES * MINUTE_MS) == []  # an hour later: nothing


def test_minutes_of_several_coordinators_add_up() -> None:
    a = [Minute(T0, 2, 1, {"USD": 500}), Minute(T0 + MINUTE_MS, 1, 0, {"EUR": 7})]
    b = [Minute(T0, 1, 0, {"USD": 25, "EUR": 3})]
    assert merged([a, b]) == [Minute(T0, 3, 1, {"USD": 525, "EUR": 3}), Minute(T0 + MINUTE_MS, 1, 0, {"EUR": 7})]
    assert a[0] == Minute(T0, 2, 1, {"USD": 500})  # the parts are left as they were
