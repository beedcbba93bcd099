"""The history-read benchmark against the real server: every read it times must answer what
was paid (a payment by id and by key, full statement pages, a balance's payments)."""

from __future__ import annotations

import argparse

import pytest

from benchmarks import queries
from tests.support.server import Server


async def test_the_queries_benchmark_reads_back_what_it_paid(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queries, "SETTLE_S", 0.0)  # answered from memory or the stored index alike
    args = argparse.Namespace(payments=400, balances=4, samples=5)
    report = await queries.measure(server.url, server.token, args)
    assert report["payments"] == 400
    kinds = ("payment_by_id", "statement_page", "statement_next_page", "payments_of_balance", "payment_by_key")
    for kind in kinds:
        timing = report[kind]
        assert isinstance(timing, dict) and 0 < timing["p50_ms"] <= timing["p99_ms"], (kind, timing)
