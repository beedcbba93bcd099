"""The pure core, the API's rendering and the journal type-check under mypy --strict: a wrong type
across them is found here, not in production. Settings in pyproject.toml ([tool.mypy])."""

from __future__ import annotations

from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parents[2]


def test_ledger_api_and_journal_type_check_strictly() -> None:
    out, err, status = api.run(
        ["--config-file", str(ROOT / "pyproject.toml"), str(ROOT / "ledger"), str(ROOT / "api"), str(ROOT / "journal")]
    )
    assert status == 0, out + err
