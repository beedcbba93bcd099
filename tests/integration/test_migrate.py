"""journal.migrate on the real 0.1 and 0.2 data directories of tests/fixtures: stopped at
every step it finishes on the next run, a damaged old journal is refused before anything
moves, and a directory a server holds is not touched."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import journal.migrate as migration
from actors.audit import verify
from journal import JournalCorrupt
from journal.migrate import MigrateError, migrate, old_journals, stale_message
from rayledger_cli import lock_data_dir

FIXTURES = Path(__file__).parent.parent / "fixtures"
FORMATS = {"0.1": 1, "0.2": 2}


def _copy(version: str, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(FIXTURES / f"data-{version}", data)
    return data


def _tree(data: Path) -> dict[str, str]:
    """Every file and its content hash; SQLite's shared-memory index and an empty WAL aside
    (a read-only reader makes them, and they hold nothing)."""
    return {
        str(p.relative_to(data)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(data.rglob("*"))
        if p.is_file() and not p.name.endswith("-shm") and not (p.name.endswith("-wal") and p.stat().st_size == 0)
    }


def _audit(data: Path) -> tuple[int, int, int, list[str]]:
    report = verify(data)
    return report.journals, report.records, report.payments, report.violations


def _migrated(version: str, tmp_path: Path) -> tuple[tuple[int, int, int, list[str]], dict[str, str]]:
    data = _copy(version, tmp_path / "reference")
    assert migrate(data, say=lambda line: None) == 6
    tree = _tree(data)  # before the audit, which opens the journals as a server would
    return _audit(data), tree


def _failing_after(calls: int, real: Callable[..., Any]) -> Callable[..., Any]:
    """`real`, but the call after the first `calls` raises, as a crash there would stop it."""
    made = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if made[0] == calls:
            raise OSError("stopped here")
        made[0] += 1
        return real(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize("version", sorted(FORMATS))
def test_a_migration_stopped_at_any_rename_is_finished_by_the_next_run(
    version: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference_audit, reference_tree = _migrated(version, tmp_path)
    assert reference_audit[3] == [] and reference_audit[2] == 11
    stopped_at = 0
    while True:
        data = _copy(version, tmp_path / f"stopped-{stopped_at}")
        with monkeypatch.context() as patch:
            patch.setattr(Path, "rename", _failing_after(stopped_at, Path.rename))
            try:
                migrate(data, say=lambda line: None)
            except OSError:
                pass
            else:
                break  # every rename done: each stop before one was tried
        assert stale_message(data) is not None, "serve and verify refuse a half-migrated directory"
        lines: list[str] = []
        migrate(data, say=lines.append)
        assert stale_message(data) is None and old_journals(data) == []
        assert _tree(data) == reference_tree, f"stopped after {stopped_at} renames"
        assert _audit(data) == reference_audit
        stopped_at += 1
    assert stopped_at >= 8  # the folders and files of both layouts, and the staging folder's removal


@pytest.mark.parametrize("version", sorted(FORMATS))
def test_a_migration_stopped_while_writing_starts_again(
    version: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference_audit, reference_tree = _migrated(version, tmp_path)
    for stopped_at in range(6):  # one old journal copied after another
        data = _copy(version, tmp_path / f"stopped-{stopped_at}")
        before = _tree(data)
        with monkeypatch.context() as patch:
            patch.setattr(migration, "_copy", _failing_after(stopped_at, migration._copy))
            with pytest.raises(OSError, match="stopped here"):
                migrate(data, say=lambda line: None)
        assert _tree(data) == before, "nothing moved, nothing left beside"
        (data / migration.STAGING / "shards").mkdir(parents=True)  # as a power cut would leave it
        migrate(data, say=lambda line: None)
        assert _tree(data) == reference_tree and _audit(data) == reference_audit


@pytest.mark.parametrize(
    ("version", "damage"),
    [
        ("0.2", "UPDATE frames SET body = CAST(body || x'00' AS BLOB) WHERE first_seq = 2"),
        ("0.2", "DELETE FROM frames WHERE first_seq = 2"),
        ("0.1", "UPDATE records SET body = CAST(body || x'00' AS BLOB) WHERE seq = 2"),
        ("0.1", "DELETE FROM records WHERE seq = 2"),
    ],
)
def test_a_damaged_old_journal_is_refused_before_anything_moves(version: str, damage: str, tmp_path: Path) -> None:
    data = _copy(version, tmp_path)
    with contextlib.closing(sqlite3.connect(data / "partitions/p-0002.sqlite", isolation_level=None)) as conn:
        assert conn.execute(damage).rowcount == 1
    before = _tree(data)
    with pytest.raises(JournalCorrupt, match=r"partitions/p-0002\.sqlite: (hash chain broken|sequence gap)"):
        migrate(data, say=lambda line: None)
    assert _tree(data) == before


def test_both_layouts_at_once_are_refused(tmp_path: Path) -> None:
    data = _copy("0.2", tmp_path)
    shutil.copytree(_copy("0.1", tmp_path / "other"), tmp_path / "other-migrated")
    migrate(tmp_path / "other-migrated", say=lambda line: None)
    shutil.copytree(tmp_path / "other-migrated" / "shards", data / "shards")
    before = _tree(data)
    with pytest.raises(MigrateError, match="both layouts"):
        migrate(data, say=lambda line: None)
    assert _tree(data) == before


def test_migrate_waits_for_the_server_to_stop(tmp_path: Path) -> None:
    data = _copy("0.2", tmp_path)
    lock = lock_data_dir(data)  # as a serving server holds it
    try:
        before = _tree(data)
        held = subprocess.run(
            [sys.executable, "-m", "rayledger_cli", "migrate", "--data-dir", str(data)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert held.returncode == 2 and "stop it first" in held.stderr, held.stderr
        assert _tree(data) == before
    finally:
        lock.close()
    done = subprocess.run(
        [sys.executable, "-m", "rayledger_cli", "migrate", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and "migrated 6 journals to format 3" in done.stdout, done.stdout + done.stderr
