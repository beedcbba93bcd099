"""OpenAPI 3.1 built from the route table and the very msgspec types the handlers use,
so the document cannot drift from what is served."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from gateway.errors import RETRY_AFTER_S, STATUS_OF_CODE, Problem
from gateway.operation import Op
from gateway.routes import CURSOR_RULE, OPS, TAGS, tag_of
from rayledger.schemas import Payment as PaymentBody
from rayledger.schemas import Transfer as TransferBody

REF = "#/components/schemas/{name}"

# Response headers, as the server sets them.
REQUEST_ID = {
    "description": "This request's id in the server's log: the client's own X-Request-Id if it sent a usable"
    " one, else a new one",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
}
REPLAYED = {
    "description": "The first answer to this Idempotency-Key again: nothing was done twice",
    "schema": {"type": "string", "enum": ["true"]},
}
RETRY_AFTER = {
    "description": f"Seconds to wait before trying again ({RETRY_AFTER_S})",
    "required": True,
    "schema": {"type": "integer", "minimum": 0},
}
WWW_AUTHENTICATE = {
    "description": "The scheme that would work: Bearer",
    "required": True,
    "schema": {"type": "string", "pattern": "^Bearer"},
}


def _headers(status: int, op: Op) -> dict[str, Any]:
    """The headers an answer of `op` with `status` carries."""
    # A stream's head goes out before the handler returns, without the id the log adds after.
    streamed = 200 <= status < 300 and op.media == "text/event-stream"
    headers = {} if streamed else {"X-Request-Id": REQUEST_ID}
    if op.idempotent and 200 <= status < 300:
        headers["Idempotent-Replayed"] = REPLAYED
    if status == 401:
        headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    if status == 503:
        headers["Retry-After"] = RETRY_AFTER
    return headers


def build_spec(version: str) -> dict[str, Any]:
    types: list[Any] = [Problem]
    for op in OPS:
        types += [t for t in (op.body, op.response) if t is not None]
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    ref_of = dict(zip(types, schemas, strict=True))
    problem_ref = ref_of[Problem]
    paths: dict[str, dict[str, Any]] = {}
    for op in OPS:
        item: dict[str, Any] = {
            "operationId": op.handler.__name__,
            "summary": op.summary,
            "tags": [tag_of(op.path)],
            "responses": {},
        }
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}}
            for name in re.findall(r"{(\w+)}", op.path)
        ]
        params += [
            {"name": name, "in": "query", "required": False, "schema": schema} for name, schema in op.query.items()
        ]
        if op.idempotent:
            params.append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "minLength": 1, "maxLength": op.idempotency_key_len_max},
                }
            )
        params += [{"name": name, "in": "header", "required": False, "schema": s} for name, s in op.headers.items()]
        if params:
            item["parameters"] = params
        if op.access == "public":
            item["security"] = []
        else:
            item["description"] = "Admin token only." if op.access == "admin" else "Admin or account token."
        if op.query.keys() & {"starting_after", "ending_before"}:
            op = op._replace(rules=f"{op.rules} {CURSOR_RULE}".strip())
        if op.rules:
            item["description"] = f"{item.get('description', '')} {op.rules}".strip()
        if op.body is not None:
            item["requestBody"] = {
                "required": not op.body_optional,
                "content": {"application/json": {"schema": ref_of[op.body]}},
            }
        ok: dict[str, Any] = {"description": "OK", "headers": _headers(op.status, op)}
        if op.response is not None:
            ok["content"] = {op.media: {"schema": ref_of[op.response]}}
        item["responses"][str(op.status)] = ok
        if op.idempotent and op.response in (PaymentBody, TransferBody):  # a money move may answer before it is final
            item["responses"]["202"] = {
                "description": "Accepted: not final within the wait limit; poll it",
                "headers": ok["headers"],
                "content": {"application/json": {"schema": ref_of[op.response]}},
            }
        for status, description in op.also.items():
            item["responses"][str(status)] = {
                "description": description,
                "headers": _headers(status, op),
                "content": {op.media: {"schema": ref_of[op.response]}},
            }
        errors = set(op.errors) | ({"unauthorized", "forbidden"} if op.access != "public" else set())
        if op.body is not None:
            errors |= {"validation_error", "payload_too_large", "unsupported_media_type"}
        if op.idempotent:
            errors |= {"idempotency_key_reused", "validation_error"}
        if op.query:
            errors.add("validation_error")
        if op.access != "public" or op.errors:
            errors.add("unavailable")
        for code in sorted(errors, key=lambda c: STATUS_OF_CODE[c][0]):
            status = str(STATUS_OF_CODE[code][0])
            entry = item["responses"].setdefault(
                status,
                {
                    "description": STATUS_OF_CODE[code][1],
                    "headers": _headers(int(status), op),
                    "content": {"application/problem+json": {"schema": problem_ref}},
                },
            )
            if entry["description"] != STATUS_OF_CODE[code][1]:
                entry["description"] += f" / {STATUS_OF_CODE[code][1]}"
        paths.setdefault(op.path, {})[op.method.lower()] = item
    batch = components.get("BatchResult")
    if batch is not None:  # each result is a payment or a problem (msgspec cannot say so itself)
        payment_ref = ref_of[next(op.response for op in OPS if (op.method, op.path) == ("POST", "/v1/payments"))]
        batch["properties"]["results"]["items"] = {"oneOf": [payment_ref, problem_ref]}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "rayledger",
            "version": version,
            "description": "A payments ledger. Amounts are decimal strings in major units.",
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": tag, "description": about} for tag, about, _ in TAGS],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
