"""The aiohttp REST gateway: `gateway.app.create_app(settings, client, admin_token_hash)`,
served by the coordinator actors (`gateway.ingress`). Importing the package imports none
of it: `gateway.schemas` (the API's types) is shared with the Python client, which should
not pay for the server's imports."""
