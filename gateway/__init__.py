"""The aiohttp REST gateway: `create_app(settings, client, admin_token_hash)`, served by
the coordinator actors (`gateway.ingress`)`."""

from gateway.app import create_app

__all__ = ["create_app"]
