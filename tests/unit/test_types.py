"""The pure core, the API's rendering, the journal and the actors type-check under mypy
--strict: a wrong type across them is found here, not in production, and so is a call to
another actor whose method was renamed or whose arguments changed (`Peer.invoke` is typed).
Settings in pyproject.toml ([tool.mypy])."""

from __future__ import annotations

from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parents[2]


def test_ledger_api_journal_and_actors_type_check_strictly() -> None:
    out, err, status = api.run(
        [
            "--config-file",
            str(ROOT / "pyproject.toml"),
            *(str(ROOT / p) for p in ("ledger", "api", "journal", "actors")),
        ]
    )
    assert status == 0, out + err
