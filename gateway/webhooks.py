"""/v1/webhook_endpoints: endpoints and their delivery logs, kept by the webhooks actor
(actors.webhooks), which also delivers."""

from __future__ import annotations

from aiohttp import web

from actors.webhooks import EndpointMade, WebhookDispatcher
from api import render
from gateway import creates
from gateway.common import decode, json_response
from gateway.errors import ApiError
from gateway.keys import CLIENT
from gateway.lists import id_bounds, newest_first, page_by_key, page_of, unknown_cursor
from gateway.operation import LIST_Q, Op
from ledger.records import DeliveryAttempted, WebhookEndpointCreated
from rayledger import schemas


def _endpoint(created: WebhookEndpointCreated, retrying: int, secret: str | None = None) -> schemas.WebhookEndpoint:
    return schemas.WebhookEndpoint(
        created.endpoint_id,
        created.url,
        created.events,
        render.timestamp(created.created_at_ms),
        retrying,
        created.description,
        secret,
    )


def _delivery(a: DeliveryAttempted) -> schemas.WebhookDelivery:
    delivered = 200 <= a.status_code < 300
    return schemas.WebhookDelivery(
        a.id,
        a.event_id,
        a.event_type,
        a.attempt,
        render.timestamp(a.at_ms),
        a.status_code or None,
        a.error,
        a.duration_ms,
        delivered,
        render.timestamp(a.next_at_ms) if a.next_at_ms else None,
    )


async def create_endpoint(request: web.Request) -> web.Response:
    body = await decode(request, schemas.WebhookEndpointCreate)
    idem, _ = creates.idem_of(request, body)
    made: EndpointMade = await request.app[CLIENT].webhooks.invoke(
        WebhookDispatcher.create_endpoint, body.url, list(body.events), body.description, idem
    )
    if made.refusal == "idempotency_key_reused":
        raise ApiError("idempotency_key_reused", "this Idempotency-Key was used with a different request")
    if made.created is None:
        raise ApiError("validation_error", made.refusal or "url refused", "url")
    response = json_response(_endpoint(made.created, 0, secret=made.secret), 201)
    if made.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


async def list_endpoints(request: web.Request) -> web.Response:
    found = (await request.app[CLIENT].webhooks.invoke(WebhookDispatcher.list_endpoints))[::-1]  # newest first
    shown, has_more = page_by_key(found, [c.endpoint_id for c, _ in found], page_of(request))
    return json_response(schemas.WebhookEndpointList(data=[_endpoint(c, n) for c, n in shown], has_more=has_more))


async def get_endpoint(request: web.Request) -> web.Response:
    found = await request.app[CLIENT].webhooks.invoke(WebhookDispatcher.get_endpoint, request.match_info["id"])
    if found is None:
        raise ApiError("webhook_endpoint_not_found", "no such webhook endpoint")
    return json_response(_endpoint(*found))


async def delete_endpoint(request: web.Request) -> web.Response:
    if not await request.app[CLIENT].webhooks.invoke(WebhookDispatcher.delete_endpoint, request.match_info["id"]):
        raise ApiError("webhook_endpoint_not_found", "no such webhook endpoint")
    return web.Response(status=204)


async def list_deliveries(request: web.Request) -> web.Response:
    page = page_of(request)
    if page.cursor is not None and not page.cursor.startswith("dlv_"):
        raise unknown_cursor(page)
    before, after = id_bounds(request, page, "dlv")
    webhooks = request.app[CLIENT].webhooks
    found = await webhooks.invoke(
        WebhookDispatcher.deliveries, request.match_info["id"], page.limit + 1, before, after, page.ascending
    )
    if found is None:
        raise ApiError("webhook_endpoint_not_found", "no such webhook endpoint")
    data = [_delivery(a) for a in newest_first(found[: page.limit], page)]
    return json_response(schemas.WebhookDeliveryList(data=data, has_more=len(found) > page.limit))


OPS: list[Op] = [
    Op(
        "POST",
        "/v1/webhook_endpoints",
        create_endpoint,
        "Subscribe a URL to events; the answer shows the signing secret, once",
        "admin",
        body=schemas.WebhookEndpointCreate,
        response=schemas.WebhookEndpoint,
        status=201,
        idempotent=True,
        rules="Each delivery is a POST of the event with Rayledger-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret,"
        ' "<t>.<body>")>; 2xx is delivered, anything else is retried (first within ~2 s, doubling up to 1 h) for 24'
        " h, at least once: dedupe by event id. URLs resolving to link-local or metadata addresses are refused (422),"
        " private and loopback ones unless RAYLEDGER_WEBHOOK_PRIVATE_TARGETS allows them (by default only when the"
        " ledger listens on loopback). The endpoint gets the events made after it.",
    ),
    Op(
        "GET",
        "/v1/webhook_endpoints",
        list_endpoints,
        "List webhook endpoints, newest first",
        "admin",
        response=schemas.WebhookEndpointList,
        query=LIST_Q,
    ),
    Op(
        "GET",
        "/v1/webhook_endpoints/{id}",
        get_endpoint,
        "A webhook endpoint (without its secret)",
        "admin",
        response=schemas.WebhookEndpoint,
        errors=("webhook_endpoint_not_found",),
    ),
    Op(
        "DELETE",
        "/v1/webhook_endpoints/{id}",
        delete_endpoint,
        "Stop delivering to an endpoint, for good",
        "admin",
        status=204,
        errors=("webhook_endpoint_not_found",),
    ),
    Op(
        "GET",
        "/v1/webhook_endpoints/{id}/deliveries",
        list_deliveries,
        "An endpoint's delivery log: every attempt, newest first",
        "admin",
        response=schemas.WebhookDeliveryList,
        errors=("webhook_endpoint_not_found",),
        query=LIST_Q,
    ),
]
