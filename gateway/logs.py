"""Structured logs: one JSON object per line on stderr, for log shippers to index.

Each API request logs one `request` event with its request id (the client's `X-Request-Id`
when it is a short token, else a fresh one; echoed in the response), route template,
status, duration and the ids of the payments it created. Headers and bodies are never
logged, so neither tokens nor personal data reach the logs.
"""

from __future__ import annotations

import logging
import re
import secrets
import time

from aiohttp import web

from actors.logs import event
from gateway.metrics import METRICS, route_of

log = logging.getLogger("rayledger.gateway")
REQUEST_ID = web.RequestKey("request_id", str)
LOGGED_IDS = web.RequestKey("logged_ids", list)  # handlers add the ids of what they created
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@web.middleware
async def observe_middleware(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    """Outermost, so error answers (problem+json from inner middlewares) are seen too: one
    timing and one route lookup per request feed both the metrics and the request log."""
    metrics = request.app[METRICS]
    given = request.headers.get("X-Request-Id", "")
    request_id = given if _CLIENT_ID.match(given) else secrets.token_hex(8)
    request[REQUEST_ID] = request_id
    request[LOGGED_IDS] = []
    started = time.perf_counter()
    metrics.in_flight.inc()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-Id"] = request_id
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        metrics.in_flight.dec()
        seconds = time.perf_counter() - started
        route = route_of(request)
        metrics.observe(route, request.method, status, seconds)
        if request.path.startswith("/v1") and log.isEnabledFor(logging.INFO):
            ids = {"ids": request[LOGGED_IDS]} if request[LOGGED_IDS] else {}
            event(
                log,
                "request",
                request_id=request_id,
                method=request.method,
                route=route,
                status=status,
                duration_ms=round(seconds * 1000, 2),
                **ids,
            )
