"""Imports point down, and only at the top of a module (docs/design.md §2, STYLE 20):
ledger < journal < actors < gateway; the Python client (`rayledger/`) imports nothing of
the server. A late import to dodge a cycle means a type is in the wrong layer.

`KNOWN` lists the breaches not yet mended, each with where its type belongs: it may only
shrink (a mended one must leave it, so the list stays true)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RANK = {"ledger": 0, "journal": 1, "api": 2, "actors": 3, "gateway": 4}
CLIENT = "rayledger"
PROJECT = {*RANK, CLIENT, "rayledger_cli", "rayledger_seed", "benchmarks", "tests"}
KNOWN = {
    # The event rendering and directory the webhooks actor sends with belong below both
    # (an api/ layer), and the delivery signature with the client's wire types.
    ("actors/webhooks.py", "rayledger.webhooks"),
    ("actors/webhooks.py", "gateway.directory"),
    ("actors/webhooks.py", "gateway.events"),
    # The client's wire types live in gateway/schemas.py until they are its own.
    ("rayledger/client.py", "gateway"),
}


def _imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, module, inside a function) of each import of a project module."""
    tree = ast.parse(path.read_text())
    found: list[tuple[int, str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                names = [a.name for a in child.names] if isinstance(child, ast.Import) else [child.module or ""]
                found.extend((child.lineno, n, in_function) for n in names if n.split(".")[0] in PROJECT)
            visit(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    visit(tree, False)
    return found


def _breaches() -> set[tuple[str, str]]:
    breaches = set()
    for package in [*RANK, CLIENT]:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = str(path.relative_to(ROOT))
            for _, module, late in _imports(path):
                top = module.split(".")[0]
                if package == CLIENT:
                    wrong = top != CLIENT
                else:
                    wrong = top not in RANK or RANK[top] > RANK[package]
                if wrong or late:
                    breaches.add((name, module))
    return breaches


def test_imports_point_down_and_sit_at_the_top() -> None:
    breaches = _breaches()
    assert breaches <= KNOWN, f"new upward or late imports: {sorted(breaches - KNOWN)}"
    assert KNOWN <= breaches, f"mended, so out of KNOWN: {sorted(KNOWN - breaches)}"


def test_the_check_sees_an_upward_and_a_late_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from gateway import app\n\ndef f():\n    from ledger import money\n")
    assert [(module, late) for _, module, late in _imports(module)] == [("gateway", False), ("ledger", True)]
