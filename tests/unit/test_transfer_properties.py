"""N-leg transfers on the balance book: random leg sets over a few balances, each leg
held as a shard holds it (a reserve on the paying side, a prepare on the receiving side,
in leg order), decided all or none, then posted or voided.

Whatever the legs: money is conserved, no limited balance ends below its limit, nothing
stays held, and the transfer succeeds exactly when every balance's debits, added up over
all its legs, fit in what it had available (credits to it in other legs do not count).
"""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given
from hypothesis import strategies as st

from ledger.book import BalanceBook
from ledger.records import BalanceOpened
from ledger.results import Check, PaymentStatus, decide, decide_legs

BALANCES = ["b0", "b1", "b2", "b3"]


@st.composite
def scenario(draw: st.DrawFn) -> tuple[dict[str, tuple[int, int]], list[tuple[str, str, int]]]:
    funds = {b: (draw(st.integers(0, 50)), draw(st.sampled_from([0, 0, 10]))) for b in BALANCES}  # amount, limit
    legs = draw(
        st.lists(
            st.tuples(st.sampled_from(BALANCES), st.sampled_from(BALANCES), st.integers(1, 40)).filter(
                lambda leg: leg[0] != leg[1]
            ),
            min_size=1,
            max_size=16,
        )
    )
    return funds, legs


@given(scenario())
def test_legs_hold_in_order_and_move_all_or_none(
    case: tuple[dict[str, tuple[int, int]], list[tuple[str, str, int]]],
) -> None:
    funds, legs = case
    book = BalanceBook()
    book.apply(BalanceOpened("issuer", "USD", 0, True))
    for b, (amount, limit) in funds.items():
        book.apply(BalanceOpened(b, "USD", limit, False))
        book.balances[b].amount, book.balances["issuer"].amount = amount, book.balances["issuer"].amount - amount
    before = {b: bal.amount for b, bal in book.balances.items()}
    checks: list[tuple[Check, Check]] = []
    for n, (src, dst, amount) in enumerate(legs):  # one payment id per leg, as the coordinator makes them
        sides = []
        for decide_side, balance in ((book.decide_reserve, src), (book.decide_prepare, dst)):
            code, record = decide_side(f"leg{n}", balance, amount, "USD", 0, 1)
            if record is not None:
                book.apply(record)
            sides.append(code)
        checks.append((sides[0], sides[1]))
    status, _, failed = decide_legs([decide(*c) for c in checks])
    for n, (src, dst, _) in enumerate(legs):
        for balance in (src, dst):
            if status == PaymentStatus.SUCCESS:
                record = book.decide_post(f"leg{n}", balance, 0)
            else:
                record = book.decide_void(f"leg{n}", balance)
            if record is not None:
                book.apply(record)
    debits: dict[str, int] = defaultdict(int)
    for src, _, amount in legs:
        debits[src] += amount
    fits = all(debits[b] <= funds[b][0] + funds[b][1] for b in debits)
    assert (status == PaymentStatus.SUCCESS) == fits
    if not fits:
        assert status == PaymentStatus.NOT_ENOUGH_MONEY and failed is not None
        # The first failing leg is the first at which its payer's running debits pass what it had.
        running: dict[str, int] = defaultdict(int)
        for n, (src, _, amount) in enumerate(legs):
            running[src] += amount
            if running[src] > funds[src][0] + funds[src][1]:
                assert failed == n
                break
    assert sum(bal.amount for bal in book.balances.values()) == 0  # conserved
    assert not book.reservations and all(bal.reserved == bal.incoming == 0 for bal in book.balances.values())
    for b, (_, limit) in funds.items():
        assert book.balances[b].amount >= -limit
        expected = before[b] if not fits else before[b] - debits[b] + sum(a for _, d, a in legs if d == b)
        assert book.balances[b].amount == expected
