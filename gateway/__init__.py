"""The aiohttp REST gateway: `create_app(settings, client, admin_token)`."""

from gateway.app import create_app

__all__ = ["create_app"]
