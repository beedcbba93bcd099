"""Schema-driven fuzzing (schemathesis) of every operation in /openapi.json against the
real server: no 5xx, and every response conforms to the documented schema. Bounded:
a few dozen generated requests per operation.

Driven through schemathesis' hypothesis strategies rather than its pytest plugin, which
does not support this pytest version. Its "schema-valid request rejected" check is left
out on purpose: JSON Schema calls 6.0 an integer and "0" a string, but the ledger refuses a
float where it wants an int and a zero amount (documented in the API's descriptions)."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from tests.support.server import Server

EXAMPLES_PER_OPERATION = 25


def test_no_server_errors_and_responses_match_schema(server: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    headers = {"Authorization": f"Bearer {server.token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
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
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        fuzz()
