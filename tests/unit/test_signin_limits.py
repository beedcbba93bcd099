"""Failed console sign-ins per address: limited past FAILURES_MAX within WINDOW_S,
forgotten as they age or on a success, bounded in memory."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.console import signins
from gateway.console.signins import FAILURES_MAX, WINDOW_S, FailedSignIns


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_is_refused_past_the_limit_until_its_oldest_failure_ages_out() -> None:
    clock = Clock()
    limits = FailedSignIns(clock)
    for n in range(FAILURES_MAX):
        assert limits.retry_after_s("10.0.0.1") is None, n
        limits.failed("10.0.0.1")
        clock.now += 1
    assert limits.retry_after_s("10.0.0.1") == WINDOW_S - FAILURES_MAX
    assert limits.retry_after_s("10.0.0.2") is None  # per address
    clock.now += WINDOW_S - FAILURES_MAX
    assert limits.retry_after_s("10.0.0.1") is None  # the first failure aged out: one more try
    limits.failed("10.0.0.1")
    assert limits.retry_after_s("10.0.0.1") == 1


def test_a_success_forgets_the_failures() -> None:
    limits = FailedSignIns(Clock())
    for _ in range(FAILURES_MAX - 1):
        limits.failed("a")
    limits.succeeded("a")
    for _ in range(FAILURES_MAX - 1):
        limits.failed("a")
    assert limits.retry_after_s("a") is None


@given(st.lists(st.tuples(st.integers(0, 30), st.floats(0, 30)), max_size=200))
def test_limited_exactly_when_the_window_holds_enough_failures(steps: list[tuple[int, float]]) -> None:
    clock = Clock()
    limits = FailedSignIns(clock)
    seen: dict[str, list[float]] = {}
    for who, wait in steps:
        clock.now += wait
        address = f"10.0.0.{who}"
        recent = [t for t in seen.get(address, []) if t > clock.now - WINDOW_S]
        assert (limits.retry_after_s(address) is not None) == (len(recent) >= FAILURES_MAX)
        limits.failed(address)
        seen[address] = [*recent, clock.now]


def test_memory_is_bounded_to_the_freshest_addresses() -> None:
    limits = FailedSignIns(Clock())
    for _ in range(FAILURES_MAX):
        limits.failed("first")
    for n in range(signins.ADDRESSES_MAX):
        limits.failed(f"a{n}")
    assert len(limits) == signins.ADDRESSES_MAX
    assert limits.retry_after_s("first") is None  # the stalest was forgotten
