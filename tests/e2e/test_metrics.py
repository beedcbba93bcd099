"""GET /metrics: Prometheus text without auth, requests counted by route template (never
by concrete path or credential), payments by final status."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.support.api import Api
from tests.support.server import Server


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(session: aiohttp.ClientSession, server: Server) -> tuple[str, dict]:  # type: ignore[type-arg]
    async with session.get(f"{server.url}/metrics") as r:  # no Authorization header
        assert r.status == 200 and r.content_type == "text/plain"
        text = await r.text()
    return text, samples(text)


async def test_metrics_count_requests_by_route_and_payments_by_status(
    api: Api, server: Server, session: aiohttp.ClientSession
) -> None:
    _, before = await scrape(session, server)
    a = (await api.balance((await api.account("metrics-a@example.com"))["id"], "USD"))["id"]
    b = (await api.balance((await api.account("metrics-b@example.com"))["id"], "USD"))["id"]
    await api.deposit(a, "10.00")
    assert (await api.pay(a, b, "1.00")).body["status"] == "success"
    assert (await api.pay(a, b, "100.00")).body["status"] == "not_enough_money"
    assert (await api.get("/v1/balances/bal_unknown")).status == 404
    hold = await api.post("/v1/holds", {"balance_from": a, "balance_to": b, "amount": "2", "expires_in_s": 60})
    assert (await api.post(f"/v1/holds/{hold.body['id']}/capture")).body["status"] == "success"
    assert (await api.get("/v1/payments/pay_unknown")).status == 404

    text, after = await scrape(session, server)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("rayledger_http_requests_total", route="/v1/payments", method="POST", status="201") == 2
    assert delta("rayledger_http_requests_total", route="/v1/balances/{id}", method="GET", status="404") == 1
    assert delta("rayledger_payments_total", status="success") == 3  # the deposit, the payment, the capture
    assert delta("rayledger_http_requests_total", route="/v1/payments/{id}", method="GET", status="404") == 1
    assert delta("rayledger_payments_total", status="not_enough_money") == 1
    assert delta("rayledger_http_request_duration_seconds_count", route="/v1/payments", method="POST") == 2
    # three calls to the coordinator (sent one after another, so one payment each)
    assert delta("rayledger_gateway_batch_payments_count") == 3  # holds and captures go their own way
    assert delta("rayledger_gateway_batch_payments_sum") == 3
    assert "bal_unknown" not in text and server.token not in text  # no paths, no secrets
