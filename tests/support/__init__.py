"""Helpers shared by the integration and e2e suites (no fakes of Ray, SQLite or aiohttp)."""
