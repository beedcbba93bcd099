"""Gateway metrics in Prometheus text at `GET /metrics` (no auth, like /healthz and /readyz).

Each app has its own registry, so several gateways in one process (tests) never share
counters. Requests are labelled by route template (`/v1/balances/{id}`), never by the
concrete path, so the label set stays bounded whatever clients send; tokens and ids never
become labels.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

METRICS = web.AppKey("metrics", "GatewayMetrics")
UNMATCHED = "unmatched"
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rayledger_http_requests",
            "HTTP requests answered, by route template, method and status",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "rayledger_http_request_duration_seconds",
            "Time from request to response, by route template and method",
            ("route", "method"),
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "rayledger_http_requests_in_flight", "API requests being served now", registry=self.registry
        )
        self.payments = Counter(
            "rayledger_payments",
            "Payments (and deposits, withdrawals, batch items) answered, by final status",
            ("status",),
            registry=self.registry,
        )

        self.batch_payments = Histogram(
            "rayledger_gateway_batch_payments",
            "Payments per call from this gateway to a coordinator (concurrent requests combined)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=self.registry,
        )

        # Labelled children, looked up once: `labels()` costs a lock and a tuple per call,
        # on every request. Bounded: routes x methods x statuses.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._statuses: dict[str, Counter] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        children = self._children.get((route, method, status))
        if children is None:
            children = self._children[(route, method, status)] = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
            )
        children[0].inc()
        children[1].observe(seconds)

    def paid(self, status: str, count: int = 1) -> None:
        child = self._statuses.get(status)
        if child is None:
            child = self._statuses[status] = self.payments.labels(status)
        child.inc(count)


def route_of(request: web.Request) -> str:
    """The route's template (as the API documents it, without any pattern in a segment)."""
    op = request.match_info.route.handler.__dict__.get("op")
    if op is not None:
        return op.path  # type: ignore[no-any-return]
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


async def metrics_endpoint(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
