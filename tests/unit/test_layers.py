"""Imports point down, and only at the top of a module (docs/design.md §2):
ledger < journal < api < actors < gateway, and the Python client (`rayledger`, its own
distribution under client/, which the server uses for the API's wire types) imports nothing
of the server. A late import to dodge a cycle means a type is in the wrong layer.

`KNOWN` lists the breaches not yet mended, each with where its type belongs: it may only
shrink (a mended one must leave it, so the list stays true)."""

from __future__ import annotations

import ast
import importlib
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RANK = {"ledger": 0, "journal": 1, "api": 2, "actors": 3, "gateway": 4}
CLIENT = "rayledger"  # below every layer but the core: the core imports nothing of ours
PROJECT = {*RANK, CLIENT, "rayledger_cli", "rayledger_seed", "benchmarks", "tests"}
KNOWN: set[tuple[str, str]] = set()


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
    for package, folder in [*((p, ROOT / p) for p in RANK), (CLIENT, ROOT / "client" / CLIENT)]:
        for path in sorted(folder.rglob("*.py")):
            name = str(path.relative_to(ROOT))
            for _, module, late in _imports(path):
                top = module.split(".")[0]
                if package == CLIENT:
                    wrong = top != CLIENT
                elif top == CLIENT:
                    wrong = package == "ledger"
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


def test_every_module_imports() -> None:
    """A moved name fails here, not when a server starts."""
    folders = [*(ROOT / p for p in RANK if (ROOT / p).is_dir()), ROOT / "client" / CLIENT]
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder.parent).with_suffix("").parts
            importlib.import_module(".".join(parts[:-1] if parts[-1] == "__init__" else parts))


LINES_MAX = 500  # a module in actors/ or gateway/ longer than this says why at its top
LONG_BECAUSE = "Longer than 500 lines because"


def test_actor_and_gateway_modules_are_short_or_say_why() -> None:
    """A long module is usually several concerns (STYLE: split by concern, not by size); one
    that is one concern says so in its opening docstring."""
    long = []
    for package in ("actors", "gateway"):
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text()
            if text.count("\n") > LINES_MAX and LONG_BECAUSE not in (ast.get_docstring(ast.parse(text)) or ""):
                long.append(str(path.relative_to(ROOT)))
    assert not long, f"over {LINES_MAX} lines with no reason given: {long}"


def test_every_package_is_in_the_distribution() -> None:
    """pyproject.toml lists packages by name: a new subpackage left out installs everywhere
    but from a wheel (the container image), where its import fails at start."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for package in [*RANK, "benchmarks"]
        for init in (ROOT / package).rglob("__init__.py")
    }
    assert found <= listed, f"packages missing from pyproject.toml: {sorted(found - listed)}"
