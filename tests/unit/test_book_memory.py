"""The shard's memory budget per balance (issue target: ≤ 300 bytes with 1M balances),
checked on a smaller book with the benchmark's own builder: heap bytes, not time."""

from benchmarks.memory import build

BUDGET_BYTES_PER_BALANCE = 300


def test_a_funded_balance_fits_the_memory_budget() -> None:
    balances = 10_000
    heap_bytes, _ = build(balances, trace=True)
    assert heap_bytes / balances <= BUDGET_BYTES_PER_BALANCE, heap_bytes / balances
