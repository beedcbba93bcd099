"""Typed application and request keys shared by the factory and the handlers."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from actors.client import LedgerClient
from actors.directory import Directory
from actors.settings import Settings
from gateway.auth import Authenticator
from gateway.batcher import PaymentBatcher


class Admission:
    """How many API requests are being served, and how many were turned away."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.refused = 0


SETTINGS = web.AppKey("settings", Settings)
ADMISSION = web.AppKey("admission", Admission)
BATCHER = web.AppKey("batcher", PaymentBatcher)
TRANSFERS = web.AppKey("transfers", PaymentBatcher)  # the same batching, for transfers
CLIENT = web.AppKey("client", LedgerClient)
DIRECTORY = web.AppKey("directory", Directory)
AUTH = web.AppKey("auth", Authenticator)
OPENAPI = web.AppKey("openapi", bytes)
SEAL_KEY = web.AppKey("seal_key", bytes)  # seals what creates' Idempotency-Keys replay (gateway.creates)
INGRESS = web.AppKey("ingress", int)  # the index of the coordinator serving this app
PRINCIPAL: Any = "rayledger.principal"  # request-scoped: who is calling
QUERY: Any = "rayledger.query"  # request-scoped: the checked query parameters (gateway.inputs)
