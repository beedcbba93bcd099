"""The aiohttp REST gateway: `gateway.app.create_app(settings, client, admin_token_hash)`,
served by the coordinator actors (`gateway.ingress`). The API's types are the Python
client's (`rayledger.schemas`, in its own distribution under client/)."""
