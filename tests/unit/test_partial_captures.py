"""A hold captured several times: each partial post moves its part and keeps the rest
held, applies once however often phase two is retried, and survives snapshots (also
those written before holds counted their posts)."""

from __future__ import annotations

import msgspec

from ledger.book import BalanceBook, BookSnapshot
from ledger.records import BalanceOpened

SNAPSHOT = msgspec.msgpack.Decoder(BookSnapshot)


def _held() -> BalanceBook:
    book = BalanceBook()
    book.apply(BalanceOpened("a", "USD", 0, False))
    book.apply(BalanceOpened("b", "USD", 0, True))  # an issuer: it may go negative
    book.balances["a"].amount = 50_00
    book.balances["b"].amount = -50_00  # as if a had been funded from b
    for decide, balance in ((book.decide_reserve, "a"), (book.decide_prepare, "b")):
        _, record = decide("hold_1", balance, 30_00, "USD", 0, 1)
        assert record is not None
        book.apply(record)
    return book


def _post(book: BalanceBook, pay: str, amount: int | None, seq: int | None) -> bool:
    applied = False
    for balance in ("a", "b"):
        record = book.decide_post(pay, balance, 0, amount, "hold_1", seq)
        if record is not None:
            book.apply(record)
            applied = True
    return applied


def test_partial_posts_keep_the_rest_held_and_apply_once() -> None:
    book = _held()
    assert _post(book, "pay_1", 12_50, 1)
    a = book.balances["a"]
    assert (a.amount, a.reserved, book.reservations[("hold_1", "a")].amount_minor) == (37_50, 17_50, 17_50)
    assert not _post(book, "pay_1", 12_50, 1)  # a retried phase two: nothing more moves
    assert _post(book, "pay_2", 5_00, 2)
    restored = BalanceBook.from_snapshot(SNAPSHOT.decode(msgspec.msgpack.encode(book.snapshot())))
    assert not _post(restored, "pay_2", 5_00, 2)  # the count of posts is in the snapshot
    assert _post(restored, "pay_3", 2_00, None)  # final: posts 2.00 and lets the rest go
    a, b = restored.balances["a"], restored.balances["b"]
    assert (a.amount, a.reserved, b.amount, b.incoming) == (30_50, 0, -30_50, 0)
    assert not restored.reservations and a.amount + b.amount == 0


def test_a_snapshot_from_before_partial_posts_still_loads() -> None:
    book = _held()
    snap = book.snapshot()
    old = msgspec.structs.replace(snap, reservations=[r[:6] for r in snap.reservations])  # 1.0 wrote six fields
    restored = BalanceBook.from_snapshot(SNAPSHOT.decode(msgspec.msgpack.encode(old)))
    assert restored.reservations[("hold_1", "a")].posts == 0 and _post(restored, "pay_1", 1_00, 1)
