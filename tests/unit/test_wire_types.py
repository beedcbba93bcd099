"""The client's wire types spell out the server's lists (statuses, event types) so that
they need none of the server: the spelled-out copies must be the server's, exactly."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from ledger.records import EVENT_TYPES
from ledger.results import PaymentStatus
from rayledger import schemas

CLIENT = Path(__file__).resolve().parents[2] / "client" / "rayledger"


def test_the_clients_lists_are_the_servers() -> None:
    assert schemas.PAYMENT_STATUSES == tuple(str(s) for s in PaymentStatus)
    assert schemas.EVENT_TYPES == EVENT_TYPES


def test_the_client_imports_only_itself_aiohttp_and_msgspec() -> None:
    allowed = {"rayledger", "aiohttp", "msgspec", "yarl", "multidict"}
    for path in CLIENT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                top = node.module.split(".")[0]
            elif isinstance(node, ast.Import):
                top = node.names[0].name.split(".")[0]
            else:
                continue
            assert top in allowed or top in sys.stdlib_module_names or top == "__future__", f"{path.name}: {top}"
