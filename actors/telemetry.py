"""Actor metrics for the Ray dashboard and Ray's Prometheus endpoint (`ray.util.metrics`).

Inside a Ray worker the metrics are Ray's; elsewhere (the in-process ledger, unit tests)
they are no-ops, so the actor classes stay constructible without Ray. Tags are bounded:
the ledger (its Ray namespace), an actor's name, a journal, a payment status; never an id.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from actors.logs import configure as configure_logs
from actors.logs import track_errors
from journal import Journal

LATENCY_MS_BOUNDARIES = [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000]
BATCH_SIZE_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096]
# Recording a Ray metric costs ~10 us here and feeds the node's dashboard agent, and a shard
# flushes its journal and serves a call hundreds of times a second: a flush is observed at
# most once per SAMPLE_S per journal (a sample, evenly spread in time, of the histograms'
# values), and a gauge is set at most once per SAMPLE_S (its last value always follows;
# Ray exports metrics every few seconds anyway).
SAMPLE_S = 0.1


class _Noop:
    def inc(self, value: float = 1, tags: dict[str, str] | None = None) -> None:
        return None

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        return None

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        return None


def _in_ray_worker() -> bool:
    try:
        import ray
    except ImportError:
        return False
    return bool(ray.is_initialized()) and ray.get_runtime_context().get_actor_id() is not None


@functools.cache
def placement() -> dict[str, object]:
    """Where the calling actor runs: its process and, inside Ray, its node (operators see
    how shards spread over the cluster; tests check that they do). Fixed for the life of
    the process, so looked up once rather than on every `/readyz` poll."""
    where: dict[str, object] = {"pid": os.getpid()}
    if _in_ray_worker():
        import ray

        where["node_id"] = ray.get_runtime_context().get_node_id()
        where["node_ip"] = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
    return where


class Telemetry:
    """The ledger's metrics, with `ledger` and `actor` as default tags on every one."""

    def __init__(self, ledger: str, actor: str) -> None:
        self._in_flight = 0
        self._in_flight_shown_at = -SAMPLE_S
        self._in_flight_due: asyncio.TimerHandle | None = None
        make: Any
        if _in_ray_worker():
            configure_logs()  # the actor's events as JSON lines in its worker log
            track_errors(required=False)
            from ray.util import metrics

            def make(kind: str, name: str, description: str, tag_keys: tuple[str, ...], **kw: Any) -> Any:
                keys = ("ledger", "actor", *tag_keys)
                metric = getattr(metrics, kind)(name, description=description, tag_keys=keys, **kw)
                return metric.set_default_tags({"ledger": ledger, "actor": actor})
        else:

            def make(*_: Any, **__: Any) -> Any:
                return _Noop()

        self.payments = make("Counter", "rayledger_payments_decided", "Payments decided, by status", ("status",))
        self.payment_latency_ms = make(
            "Histogram",
            "rayledger_payment_latency_ms",
            "Coordinator calls that decided payments, from taking the batch to its durable decision",
            (),
            boundaries=LATENCY_MS_BOUNDARIES,
        )
        self.flush_latency_ms = make(
            "Histogram",
            "rayledger_journal_flush_latency_ms",
            "One journal flush (a transaction and its fsync)",
            ("journal",),
            boundaries=LATENCY_MS_BOUNDARIES,
        )
        self.flush_rows = make(
            "Histogram",
            "rayledger_journal_flush_rows",
            "Records written by one journal flush (group commit batch size)",
            ("journal",),
            boundaries=BATCH_SIZE_BOUNDARIES,
        )
        self.calls_in_flight = make("Gauge", "rayledger_calls_in_flight", "Calls an actor is serving now", ())
        self.balances = make("Gauge", "rayledger_balances", "Balances held in memory by a shard", ())

    def watch(self, journal: Journal, name: str) -> None:
        """Observe the flushes of `journal` (latency and rows), tagged with its name: at
        most one per SAMPLE_S."""
        tags = {"journal": name}
        observed_at = -SAMPLE_S

        def observe(rows: int, seconds: float) -> None:
            nonlocal observed_at
            now = time.monotonic()
            if now < observed_at + SAMPLE_S:
                return
            observed_at = now
            self.flush_latency_ms.observe(seconds * 1000, tags)
            self.flush_rows.observe(rows, tags)

        journal.on_flush = observe

    @contextmanager
    def serving(self) -> Iterator[None]:
        """Counts a call in `calls_in_flight` (queue depth) while it runs."""
        self._in_flight += 1
        self._show_in_flight()
        try:
            yield
        finally:
            self._in_flight -= 1
            self._show_in_flight()

    def _show_in_flight(self) -> None:
        now = time.monotonic()
        if now >= self._in_flight_shown_at + SAMPLE_S:
            self._in_flight_shown_at = now
            self.calls_in_flight.set(self._in_flight)
        elif self._in_flight_due is None:  # the value it settles on is shown when the interval ends
            self._in_flight_due = asyncio.get_running_loop().call_later(SAMPLE_S, self._shown_later)

    def _shown_later(self) -> None:
        self._in_flight_due = None
        self._in_flight_shown_at = time.monotonic()
        self.calls_in_flight.set(self._in_flight)
