"""Payments decided per minute over the last hour (the console's dashboard chart).

Each coordinator counts the payments it decides, by the minute of their decision: how many
succeeded, how many did not, and the amount that moved per currency. The counts are rebuilt
by journal replay and carried in snapshots, so a restart keeps the hour it had. Minutes
older than the window are dropped as new ones open, so the state stays a few kilobytes.
"""

from __future__ import annotations

import msgspec

from ledger.records import PaymentRecord
from ledger.results import PaymentStatus

MINUTE_MS = 60_000
WINDOW_MINUTES = 60


class Minute(msgspec.Struct, array_like=True):
    start_ms: int
    succeeded: int = 0
    failed: int = 0
    volume: dict[str, int] = {}  # currency -> minor units moved by the successful payments


class Activity:
    def __init__(self, minutes: list[Minute] | None = None) -> None:
        self._minutes: dict[int, Minute] = {m.start_ms: m for m in minutes or []}

    def add(self, p: PaymentRecord) -> None:
        if p.status == PaymentStatus.PENDING:
            return
        at_ms = p.settled_at_ms or p.created_at_ms
        start_ms = at_ms - at_ms % MINUTE_MS
        minute = self._minutes.get(start_ms)
        if minute is None:
            newest = max(self._minutes, default=start_ms)
            if start_ms <= newest - WINDOW_MINUTES * MINUTE_MS:
                return  # replaying a decision older than the window
            minute = self._minutes[start_ms] = Minute(start_ms, volume={})
            self._drop_before(max(newest, start_ms) - (WINDOW_MINUTES - 1) * MINUTE_MS)
        if p.status == PaymentStatus.SUCCESS:
            minute.succeeded += 1
            minute.volume[p.currency] = minute.volume.get(p.currency, 0) + p.amount_minor
        else:
            minute.failed += 1

    def _drop_before(self, start_ms: int) -> None:
        for old in [m for m in self._minutes if m < start_ms]:
            del self._minutes[old]

    def minutes(self, now_ms: int | None = None) -> list[Minute]:
        """The window's minutes that saw a decision, oldest first (those of the hour before
        `now_ms`, when given)."""
        kept = sorted(self._minutes.values(), key=lambda m: m.start_ms)
        if now_ms is None:
            return kept
        since = now_ms - now_ms % MINUTE_MS - (WINDOW_MINUTES - 1) * MINUTE_MS
        return [m for m in kept if m.start_ms >= since]


def merged(parts: list[list[Minute]]) -> list[Minute]:
    """Several coordinators' minutes as one series, oldest first."""
    out: dict[int, Minute] = {}
    for minutes in parts:
        for m in minutes:
            into = out.get(m.start_ms)
            if into is None:
                into = out[m.start_ms] = Minute(m.start_ms, volume={})
            into.succeeded += m.succeeded
            into.failed += m.failed
            for currency, amount in m.volume.items():
                into.volume[currency] = into.volume.get(currency, 0) + amount
    return [out[k] for k in sorted(out)]
