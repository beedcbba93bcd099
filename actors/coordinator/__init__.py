"""The payment coordinator: a Ray actor made of plain parts (actors/coordinator/actor.py
names them), moving money between balances with reserve-then-post (docs/design.md §4)."""

from __future__ import annotations

from actors.coordinator.actor import PaymentCoordinator, coordinator_journal_path
from actors.coordinator.history import REFUNDS_PER_PAYMENT_MAX

__all__ = ["REFUNDS_PER_PAYMENT_MAX", "PaymentCoordinator", "coordinator_journal_path"]
