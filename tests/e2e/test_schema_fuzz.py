"""Schema-driven fuzzing (schemathesis, every check) of every operation in /openapi.json
against the real server: no 5xx, every response conforms to the documented schema, and
every schema-valid request is accepted unless it breaks one of the rules a schema cannot
state, which the API documents instead. Bounded: a few dozen requests per operation.

Driven through schemathesis' hypothesis strategies rather than its pytest plugin, which
does not support this pytest version. Failures are collected over every operation, so one
run names them all."""

from __future__ import annotations

import re
from collections import defaultdict

import aiohttp
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.failures import Failure, FailureGroup

from tests.support.server import Server

EXAMPLES_PER_OPERATION = 25

# Rules that hold between fields or depend on the ledger's state, stated in the API's
# descriptions instead of the schema: a payment needs two different balances, a currency
# must exist, an amount has at most its currency's decimals, a list cursor must be an item
# of that list (and only one of the two cursors may be given).
DOCUMENTED_REFUSALS = {"same_balance", "unknown_currency", "invalid_amount"}
# A cursor must be an item of its list; a rate has at most 12 significant digits (a count a
# JSON Schema pattern cannot state without look-ahead); a rate is between two currencies; a
# webhook URL must be http(s) and resolve to addresses the rules allow (DNS, not a schema).
DOCUMENTED_PARAMS = {"starting_after", "ending_before", "rate", "quote", "url"}


def _documented(failure: Exception, status: int, body: object) -> bool:
    if type(failure).__name__ != "RejectedPositiveData" or not isinstance(body, dict) or status != 422:
        return False
    return body.get("code") in DOCUMENTED_REFUSALS or body.get("param") in DOCUMENTED_PARAMS


def test_every_check_passes_but_documented_rules(server: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    headers = {"Authorization": f"Bearer {server.token}"}
    # The event stream never ends by itself (tests/e2e/test_events.py drives it instead).
    operations = [op for op in (r.ok() for r in schema.get_all_operations()) if op.path != "/v1/events/stream"]
    assert len(operations) >= 20
    undocumented: dict[str, set[str]] = defaultdict(set)
    documented = 0
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def fuzz(case: schemathesis.Case) -> None:
            nonlocal documented
            response = case.call(headers=headers)
            try:
                case.validate_response(response, headers=headers)
            except (FailureGroup, Failure) as exc:
                failures = exc.exceptions if isinstance(exc, FailureGroup) else [exc]
                try:
                    body = response.json()
                except ValueError:
                    body = None
                for failure in failures:
                    if _documented(failure, response.status_code, body):
                        documented += 1
                    else:
                        undocumented[f"{case.operation.label}: {type(failure).__name__}"].add(
                            f"{response.status_code} {response.text[:200]}"
                        )

        fuzz()
    assert not undocumented, dict(undocumented)
    assert documented >= 1, "the fuzzer reached the documented rules, so it did reach the handlers"


async def test_405_lists_exactly_the_methods_the_api_documents(server: Server) -> None:
    async with aiohttp.ClientSession() as session:
        spec = await (await session.get(f"{server.url}/openapi.json")).json()
        headers = {"Authorization": f"Bearer {server.token}"}
        for path, item in spec["paths"].items():
            documented = {m.upper() for m in item}
            concrete = re.sub(r"{\w+}", "x_1", path)
            other = next(m for m in ("PUT", "DELETE", "PATCH", "POST") if m not in documented)
            async with session.request(other, server.url + concrete, headers=headers) as reply:
                assert reply.status == 405, (path, reply.status)
                assert set(reply.headers["Allow"].split(",")) == documented, (path, reply.headers["Allow"])
