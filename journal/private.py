"""A data directory is the ledger's alone: balances, payments, key hashes and sealed
secrets are readable by no other local user. Folders are 0700 and files 0600, set where
they are made (SQLite gives a database's -wal and -shm files the database file's mode) and
tightened when they are opened, for a directory made by an older version or copied in.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def _tighten(path: Path, mode: int) -> None:
    with contextlib.suppress(FileNotFoundError, PermissionError):  # not ours to change: leave it as it is
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            os.chmod(path, mode)


def private_dir(path: Path) -> None:
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _tighten(path, DIR_MODE)


def private_file(path: Path) -> None:
    """Make `path` (empty) if it is missing, 0600, in a 0700 folder; SQLite's side files too."""
    private_dir(path.parent)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE))
    _tighten(path, FILE_MODE)
    for suffix in SQLITE_SIDE_FILES:
        _tighten(Path(f"{path}{suffix}"), FILE_MODE)


def write_private(path: Path, data: bytes) -> bool:
    """Write a new 0600 file durably and whole: written and synced under a temporary name,
    then linked into place, so a crash never leaves `path` empty or short. False if it
    exists already (the first writer won)."""
    private_dir(path.parent)
    if path.exists():
        return False
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)  # fails if another writer linked first
    except FileExistsError:
        return False
    finally:
        os.unlink(temporary)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return True
