"""One version, written once in pyproject.toml: `rayledger --version` (and with it the API
document and the console, which read the same function) says that one, and no release the
project's documents name is newer."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from journal.sqlite import FORMAT
from rayledger_cli import build_parser

ROOT = Path(__file__).parents[2]


def _release(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in text.split("."))


def _project_version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def test_version_is_the_one_in_pyproject_with_the_journal_format(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"rayledger {_project_version()} (journal format {FORMAT})\n"


def test_no_release_the_documents_name_is_newer_than_the_version() -> None:
    results = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    readme = (ROOT / "README.md").read_text()
    named = re.findall(r"^#+ (\d+\.\d+(?:\.\d+)?)\b", results, re.MULTILINE)
    named += re.findall(r"\brayledger (\d+\.\d+(?:\.\d+)?)\b", readme)
    assert named, "the benchmark results name their releases"
    newest = max(named, key=_release)
    assert _release(newest) <= _release(_project_version()), f"{newest} is named, the version is older"


def test_the_client_distribution_carries_the_same_version() -> None:
    client = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]
    assert (client["name"], client["version"]) == ("rayledger-client", _project_version())
