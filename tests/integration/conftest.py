"""A session-scoped local Ray cluster (private temp dir, no dashboard, small object store)
and a fresh ledger per test: its own namespace and data directory, its actors killed after."""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

OBJECT_STORE_BYTES = 80 * 2**20


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    import ray

    temp_dir = tempfile.mkdtemp(prefix="rl-test-")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=OBJECT_STORE_BYTES,
        _temp_dir=temp_dir,
        namespace="rayledger-tests",
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


class RayLedger:
    def __init__(self, data_dir: Path, **overrides: Any) -> None:
        from actors.settings import Settings

        self.settings = Settings(
            data_dir=str(data_dir), namespace=f"t-{uuid.uuid4().hex[:12]}", dashboard=False, **overrides
        )
        self.handles: Any = None

    def start(self) -> RayLedger:
        from actors.client import LedgerClient
        from actors.factory import start_actors
        from actors.peers import ray_lookup

        self.handles = start_actors(self.settings)
        # Fresh handles: the previous ones may name actors killed for good.
        self.client = LedgerClient(self.settings, ray_lookup(self.settings.namespace))
        return self

    def reconfigure(self, **changes: Any) -> RayLedger:
        """The same ledger (data dir, namespace) served with another topology."""
        import msgspec

        self.settings = msgspec.structs.replace(self.settings, **changes)
        return self

    def stop(self) -> None:
        from actors.factory import kill_actors

        if self.handles is not None:
            kill_actors(self.handles)
            self.handles = None


@pytest.fixture
def ray_ledger(ray_cluster: None, tmp_path: Path) -> Iterator[RayLedger]:
    ledger = RayLedger(tmp_path / "data", partitions=4, shards=2, coordinators=1).start()
    try:
        yield ledger
    finally:
        ledger.stop()
