"""Typed application keys shared by the factory and the handlers."""

from __future__ import annotations

from aiohttp import web

from actors.client import LedgerClient
from actors.settings import Settings
from gateway.directory import Directory

SETTINGS = web.AppKey("settings", Settings)
CLIENT = web.AppKey("client", LedgerClient)
DIRECTORY = web.AppKey("directory", Directory)
ADMIN_TOKEN = web.AppKey("admin_token", str)
