"""Building blocks for scenarios driven through LedgerClient (shared with benchmarks)."""

from benchmarks.funding import now_ms, open_funded_balances, payment

__all__ = ["now_ms", "open_funded_balances", "payment"]
