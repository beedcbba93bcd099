"""POST /v1/payments/batch: up to 1000 payments in one request, each checked exactly as the
same payment sent alone (gateway.payments) and each succeeding or failing alone; with an
Idempotency-Key the whole batch replays as one unit (contract 1.2)."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from actors.registry import Registry
from gateway import creates, payments
from gateway.common import decode, json_response
from gateway.errors import ApiError
from gateway.keys import CLIENT, DIRECTORY
from gateway.operation import Op
from rayledger import schemas


async def create_batch(request: web.Request) -> web.Response:
    """Each item succeeds or fails alone; results come back in input order.

    An Idempotency-Key header makes the whole batch one replayable unit (contract 1.2).
    Every item without a key of its own is keyed `<header>:<index>`, so each item that ran
    replays its payment. The items refused before running (an unknown balance, say) are
    refused first, then the registry claims the header for this body together with those
    refusals, before any item runs: a replay answers them again (even if the balance exists
    by then), another body under that header is 409 before anything moves. No two items
    share a key: one key for two different payments would answer the second with the first."""
    body = await decode(request, schemas.BatchCreate)
    header = request.headers.get(payments.IDEMPOTENCY_HEADER)
    item_keys = _batch_item_keys(body, header)
    results: list[msgspec.Struct | dict[str, object] | None] = [None] * len(body.payments)
    prepared: dict[int, payments.Prepared] = {}
    # One directory lookup for the whole batch: each item's checks then find its balances cached.
    await request.app[DIRECTORY].balances([b for item in body.payments for b in (item.balance_from, item.balance_to)])
    for n, (item, item_key) in enumerate(zip(body.payments, item_keys, strict=True)):
        try:
            key = payments.scoped_key(request, item_key) if item_key is not None else None
            fp = payments.fingerprint(request, item) if key is not None else None
            known = payments.prepare_known(request, item, key, fp)  # usually: no await per item
            prepared[n] = known if known is not None else await payments.prepare_payment(request, item, key, fp)
        except ApiError as error:
            results[n] = msgspec.to_builtins(error.problem())
    replayed = False
    if header is not None:
        idem, _ = creates.idem_of(request, body)
        assert idem is not None
        refused = {n: problem for n, problem in enumerate(results) if problem is not None}
        claimed = await request.app[CLIENT].registry.invoke(Registry.claim_batch, idem, msgspec.msgpack.encode(refused))
        if claimed is not None:
            if claimed.fingerprint != idem.fingerprint:
                raise ApiError("idempotency_key_reused", "this Idempotency-Key was used with a different request")
            replayed = True
            first = msgspec.msgpack.decode(claimed.refusals or b"\x80", type=dict[int, dict[str, Any]])
            for n, problem in first.items():
                results[n] = problem
                prepared.pop(n, None)
    slots = list(prepared)
    answered = await payments.answer(request, list(prepared.values())) if prepared else []
    for n, answer in zip(slots, answered, strict=True):
        results[n] = answer.body  # encoded with the rest, as it is
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return json_response(schemas.BatchResult(results=results), headers=headers)  # type: ignore[arg-type]


BATCH_HEADER_KEY_LEN_MAX = payments.IDEMPOTENCY_KEY_LEN_MAX - len(f":{schemas.BATCH_ITEMS_MAX - 1}")


def _batch_item_keys(body: schemas.BatchCreate, header: str | None) -> list[str | None]:
    """Each item's own key, or `<header>:<index>`; 422 naming the second of two items
    that would share one."""
    if header is not None:
        payments.check_key_length(header)
        if len(header) > BATCH_HEADER_KEY_LEN_MAX:
            raise ApiError(
                "validation_error",
                f"a batch's Idempotency-Key must be 1 to {BATCH_HEADER_KEY_LEN_MAX} characters: its items are keyed"
                " <key>:<index>, at most 255",
                payments.IDEMPOTENCY_HEADER,
            )
    keys: list[str | None] = []
    first_of: dict[str, int] = {}
    for n, item in enumerate(body.payments):
        key = item.idempotency_key if item.idempotency_key is not None else None if header is None else f"{header}:{n}"
        if key is not None:
            if key in first_of:
                raise ApiError(
                    "validation_error",
                    f"payments[{n}] has the Idempotency-Key of payments[{first_of[key]}]; each payment needs its own",
                    f"payments[{n}].idempotency_key",
                )
            first_of[key] = n
        keys.append(key)
    return keys


OPS: list[Op] = [
    Op(
        "POST",
        "/v1/payments/batch",
        create_batch,
        "Up to 1000 payments; each succeeds or fails alone",
        "account",
        body=schemas.BatchCreate,
        response=schemas.BatchResult,
        idempotent=True,
        idempotency_key_len_max=BATCH_HEADER_KEY_LEN_MAX,
        rules="An Idempotency-Key header makes the whole batch one replayable unit: the same key and body"
        " answer the first results again (Idempotent-Replayed: true), another body with that key is 409"
        " idempotency_key_reused and nothing moves. Items without an idempotency_key of their own are keyed"
        " `<header key>:<index>`. No two items may share a key (422 naming the second,"
        " payments[n].idempotency_key).",
    ),
]
