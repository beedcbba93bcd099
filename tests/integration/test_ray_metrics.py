"""The actors' metrics reach Ray's Prometheus endpoint (what the dashboard and Grafana
read): payments by status, payment latency, journal flush latency and rows, per ledger
and actor."""

from __future__ import annotations

import asyncio
import urllib.request

import ray
from prometheus_client.parser import text_string_to_metric_families

from ledger.results import PaymentStatus
from tests.integration.conftest import RayLedger
from tests.support.scenario import open_funded_balances, payment

EXPORT_WAIT_S_MAX = 90  # Ray exports custom metrics every few seconds


def scrape() -> list[tuple[str, dict[str, str], float]]:
    port = ray._private.worker._global_node.metrics_export_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def total(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(v for n, ls, v in samples if n == name and all(ls.get(k) == want for k, want in labels.items()))


async def test_actor_metrics_are_exported_by_ray(ray_ledger: RayLedger) -> None:
    client = ray_ledger.client
    _, ids, _ = await open_funded_balances(client, 4, 10_00)
    paid = await client.pay([payment(ids[0], ids[1], 1_00), payment(ids[2], ids[3], 1_000_00)])
    assert [p.status for p in paid] == [PaymentStatus.SUCCESS, PaymentStatus.NOT_ENOUGH_MONEY]
    ledger = ray_ledger.settings.namespace
    coordinator = {"ledger": ledger, "actor": "coordinator-0"}

    samples: list[tuple[str, dict[str, str], float]] = []
    for _ in range(EXPORT_WAIT_S_MAX):
        samples = scrape()
        if total(samples, "ray_rayledger_payments_decided_total", **coordinator, status="not_enough_money"):
            break
        await asyncio.sleep(1)
    # 4 deposits and 1 payment succeeded, 1 was refused
    assert total(samples, "ray_rayledger_payments_decided_total", **coordinator, status="success") == 5
    assert total(samples, "ray_rayledger_payments_decided_total", **coordinator, status="not_enough_money") == 1
    # One latency sample per coordinator call that decided payments: the deposits, the pair.
    assert total(samples, "ray_rayledger_payment_latency_ms_count", **coordinator) == 2
    assert total(samples, "ray_rayledger_journal_flush_rows_count", ledger=ledger, journal="c-0") >= 1
    # The registry wrote records (accounts, balances); its flushes are sampled (at most one
    # per SAMPLE_S), so at least one was observed. Ray rebuilds an exported histogram's sum
    # from its bucket midpoints (ray._private.telemetry), which counts a flush of 1 row as 0.5.
    assert total(samples, "ray_rayledger_journal_flush_rows_count", ledger=ledger, journal="registry") >= 1
    assert total(samples, "ray_rayledger_journal_flush_rows_sum", ledger=ledger, journal="registry") >= 0.5
    assert total(samples, "ray_rayledger_balances", ledger=ledger) >= 4
