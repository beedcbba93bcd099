"""One frozen Settings object, read once from the CLI and `RAYLEDGER_*` variables.

It is passed down explicitly (and pickled into every actor); nothing reads the
environment later. Secrets (the admin token) are deliberately not part of it, so they
never travel to actors or appear in Ray's task metadata.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import msgspec


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    data_dir: str = "./data"
    host: str = "127.0.0.1"
    port: int = 8080
    # Ray
    ray_address: str | None = None  # None: start an embedded single-node cluster
    namespace: str = "rayledger"
    dashboard: bool = True
    # Where an embedded cluster's dashboard listens: this machine only, unless told. In a
    # container 127.0.0.1 is the container itself, so the image sets 0.0.0.0 for its
    # published port to reach the dashboard.
    dashboard_host: str = "127.0.0.1"
    object_store_memory_bytes: int = 128 * 2**20  # payments are small; keep RAM for balances
    # Topology. Partitions are fixed at creation; shards/coordinators may change per restart.
    partitions: int = 16
    shards: int = 2  # 2 cores here: more shard processes only add context switches
    coordinators: int = 1
    # Bounds
    payment_wait_ms: int = 10_000  # then 202 pending; the payment still settles
    request_body_bytes_max: int = 2**20  # the API's 1 MiB limit
    journal_batch_rows_max: int = 4096  # rows per SQLite transaction
    journal_busy_timeout_ms: int = 5_000  # a locked or stalled disk turns the journal unwritable after this
    journal_commit_on_loop: bool = True  # commit on the actor's event loop, not a writer thread (journal.sqlite)
    # Coordinators' and shards' history index stored by a process of its own (journal.indexer).
    # Off by default: on one node it gave single payments +27%, but with a node held to 0.4
    # of a core (scaleout.py) 2 nodes made 276-324 payments/s against 695 with the thread.
    history_index_process: bool = False
    gateway_batch_max: int = 512  # payments per coordinator call
    # Concurrent calls; more requests wait and batch. Measured at 64 connections (uniform):
    # 1 → 595 payments/s, 2 → 550, 4 → 450; 2 keeps one slow call from stalling every request.
    gateway_batch_share_wait_ms: int = 10  # a free slot waits this long at most for its fair share (gateway.batcher)
    gateway_batches_in_flight_max: int = 2
    requests_in_flight_max: int = 1_024  # past this the gateway answers 503 at once instead of queueing
    # A payment is answered at its durable decision; its phase two rides the next phase-one
    # call to the same shard, or goes on its own after this long (at once if no other
    # payment is in progress; see PaymentCoordinator).
    # Server CPU per payment, uniform at 64 connections: 2.50 ms answering after phase two,
    # 2.25 / 2.07 / 2.05 / 2.03 ms carrying for 5 / 10 / 20 / 50 ms. A read that finds a
    # payment settling waits up to this long more, so the gain flattens past 10.
    phase2_carry_ms: int = 10
    read_settle_wait_ms: int = 5_000  # a read waits this long at most for payments settling on it
    snapshot_every_records: int = 100_000  # bounds replay work after a crash
    recent_payments_max: int = 100_000  # coordinator's in-memory cache of decided payments
    hold_sweep_interval_ms: int = 500  # how late past its expiry a hold may still be released
    hold_expires_in_s_max: int = 7 * 24 * 3600
    idempotency_window_s: int = 24 * 3600  # a key replays its first outcome this long
    # An event stream sends events in id (time) order once they are this old, so that one
    # recorded a moment earlier on another journal is not passed over (gateway.events).
    events_stream_lag_ms: int = 500
    idempotency_keys_in_memory_max: int = 200_000  # older keys in the window are looked up on disk
    directory_cache_max: int = 100_000  # gateway's cache of immutable balance facts
    auth_cache_ttl_ms: int = 1_000  # how long another gateway may still accept a revoked key
    # Webhooks (actors.webhooks). Private and loopback receivers: None allows them only when
    # the ledger itself listens on loopback.
    webhook_private_targets: bool | None = None
    webhook_concurrency: int = 16  # deliveries in flight per endpoint
    webhook_timeout_s: float = 10.0  # per delivery, connecting included
    webhook_retrying_max: int = 1_000  # events awaiting a retry per endpoint; past it new ones wait in the journals
    # Deliveries use only CPU nothing else wants (Linux SCHED_IDLE): with a nice of 10 a
    # subscribed endpoint still cost ~30% of payments/s at full load on 2 cores (RESULTS.md).
    webhook_idle_priority: bool = True

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def admin_token_path(self) -> Path:
        return self.data_path / ADMIN_TOKEN_FILE


# The admin token's file in the data directory, made by `rayledger serve` on first start
# unless RAYLEDGER_ADMIN_TOKEN is set (then the variable wins and no file is read).
ADMIN_TOKEN_FILE = "admin_token"

_ENV_PREFIX = "RAYLEDGER_"


def settings_from_env(overrides: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Environment first, explicit overrides (CLI flags) on top; types checked by msgspec."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    for field in msgspec.structs.fields(Settings):
        value = env.get(_ENV_PREFIX + field.name.upper())
        if value is not None:
            raw[field.name] = value
    values = msgspec.convert(raw, Settings, strict=False)
    if overrides:
        values = msgspec.structs.replace(values, **{k: v for k, v in overrides.items() if v is not None})
    for name in ("partitions", "shards", "coordinators"):
        if getattr(values, name) < 1:
            raise ValueError(f"{name} must be at least 1")
    return values


@functools.cache  # the console renders it on every page
def package_version() -> str:
    """The version, written once in pyproject.toml (the CLI's --version, the OpenAPI
    document, the console). From a source checkout it is read there, so an editable install
    does not go on naming the version it was installed at; an installed package reads its
    metadata, which was made from that same file."""
    import tomllib
    from importlib.metadata import PackageNotFoundError, version

    source = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if source.is_file():
        project = tomllib.loads(source.read_text()).get("project", {})
        if project.get("name") == "rayledger":
            return str(project["version"])
    try:
        return version("rayledger")
    except PackageNotFoundError:
        return "0+unknown"
