"""Schema-driven fuzzing of every operation in /openapi.json against the real server, with
every check schemathesis has, in its coverage (boundary values, valid and invalid), fuzzing
(valid and invalid) and stateful (sequences through links it infers) phases: no 5xx, every
answer as documented (status, content type, headers, body), invalid requests refused,
authentication enforced, 405s that list what is allowed, and every valid request accepted
unless it breaks a rule a schema cannot state, which the operation's description states
instead (rules between fields or on the ledger's state). Bounded: a few examples per
operation, no shrinking, one seed.

Driven through schemathesis' engine rather than its pytest plugin, which does not support
this pytest version; failures are collected over every operation, so one run names them all."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import aiohttp
import schemathesis
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema

from tests.support.server import Server

EXAMPLES_PER_OPERATION = 5

# The refusals of valid requests that the API documents (code, param, detail), each a rule a
# schema cannot state: a cursor must be an item of its list (and one cursor at most); two
# different balances, neither an issuer's nor an FX liquidity balance, with a rate between
# their currencies for a quote; an existing currency; an amount with at most its currency's
# decimals that converts to a minor unit; a rate of at most 12 significant digits (a count a
# pattern cannot state without look-ahead) between two currencies; a webhook URL whose host
# resolves to addresses the rules allow (DNS, not syntax: that is in the schema).
DOCUMENTED = [
    ("validation_error", r"starting_after|ending_before", r""),
    ("same_balance", r".*", r""),
    ("validation_error", r"(legs\[\d+\]\.)?balance_(from|to)", r"issuer and FX liquidity|no exchange to quote"),
    ("unknown_currency", r".*", r""),
    ("invalid_amount", r"(legs\[\d+\]\.)?(amount|overdraft_limit)", r"decimal|whole number|converts to"),
    ("validation_error", r"rate", r"significant digits"),
    ("validation_error", r"quote", r"two different currencies"),
    ("validation_error", r"url", r"does not resolve|^url refused: "),
]


def _documented(check: str, status: int, body: Any) -> bool:
    if check != "positive_data_acceptance" or status != 422 or not isinstance(body, dict):
        return False
    code, param, detail = body.get("code"), body.get("param") or "", body.get("detail", "")
    return any(
        code == c and re.fullmatch(p, param) is not None and re.search(d, detail) is not None for c, p, d in DOCUMENTED
    )


def test_every_check_passes_but_documented_rules(server: Server) -> None:
    config = SchemathesisConfig.from_dict(
        {
            "headers": {"Authorization": f"Bearer {server.token}"},
            "workers": 1,
            "seed": 22,
            "continue-on-failure": True,
            "checks": {"enabled": True},
            "phases": {
                "examples": {"enabled": False},  # the schema has none
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": True},
            },
            "generation": {
                "mode": "all",
                "max-examples": EXAMPLES_PER_OPERATION,
                "no-shrink": True,
                "deterministic": True,
                "database": "none",
            },
        }
    )
    # The event stream never ends by itself (tests/e2e/test_events.py drives it instead).
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=config).exclude(
        path="/v1/events/stream"
    )
    undocumented: dict[str, set[str]] = defaultdict(set)
    documented = cases = 0
    checks_run: set[str] = set()
    for event in from_schema(schema).execute():
        if isinstance(event, events.NonFatalError | events.FatalError):
            undocumented[f"error in {event.label if isinstance(event, events.NonFatalError) else 'the run'}"].add(
                repr(event.value if isinstance(event, events.NonFatalError) else event.exception)[:300]
            )
        if not isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
            continue
        recorder = event.recorder
        cases += len(recorder.cases)
        for case_id, checks in recorder.checks.items():
            for check in checks:
                checks_run.add(check.name)
                if check.status != Status.FAILURE:
                    continue
                interaction = recorder.interactions.get(case_id)
                response = interaction.response if interaction is not None else None
                status = response.status_code if response is not None else 0
                try:
                    body = response.json() if response is not None else None
                except ValueError:
                    body = None
                if _documented(check.name, status, body):
                    documented += 1
                    continue
                assert check.failure_info is not None
                label = recorder.cases[case_id].value.operation.label
                undocumented[f"{label}: {check.name}"].add(
                    f"{status} {(response.text_lossy() if response is not None else '')[:200]}"
                    f" ({check.failure_info.failure.title})"
                )
    assert not undocumented, "\n".join(f"{k}: {sorted(v)}" for k, v in sorted(undocumented.items()))
    load_all_checks()
    assert checks_run == set(CHECKS.get_all_names()), "every check ran"
    assert cases >= 1000 and documented >= 1, "the run reached the handlers, and the documented rules"


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
