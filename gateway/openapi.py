"""OpenAPI 3.1 built from the route table and the very msgspec types the handlers use,
so the document cannot drift from what is served."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from gateway.errors import STATUS_OF_CODE, Problem
from gateway.routes import CURSOR_RULE, OPS
from gateway.schemas import Payment as PaymentBody
from gateway.schemas import Transfer as TransferBody

REF = "#/components/schemas/{name}"


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
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                }
            )
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
            item["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref_of[op.body]}}}
        ok: dict[str, Any] = {"description": "OK"}
        if op.response is not None:
            ok["content"] = {"application/json": {"schema": ref_of[op.response]}}
        item["responses"][str(op.status)] = ok
        if op.idempotent and op.response in (PaymentBody, TransferBody):  # a money move may answer before it is final
            item["responses"]["202"] = {
                "description": "Accepted: not final within the wait limit; poll it",
                "content": {"application/json": {"schema": ref_of[op.response]}},
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
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
