"""What a data directory shows another local user: nothing. Folders are 0700 and files
0600 (a directory made by an older, laxer version is tightened at start), and no file holds
a webhook signing secret or an API key's token in the clear, WAL files and snapshots
included."""

from __future__ import annotations

import contextlib
import stat
from pathlib import Path

import aiohttp

from tests.e2e.conftest import fresh_server
from tests.support.api import Api


def _modes(root: Path) -> dict[str, int]:
    """The mode of every file and folder under `root` (SQLite's transient files may vanish
    while they are listed)."""
    modes = {}
    for path in [root, *root.rglob("*")]:
        with contextlib.suppress(FileNotFoundError):
            modes[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
    return modes


async def test_the_data_directory_is_private_and_holds_no_secret_in_the_clear(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)  # as an older version left it (or a umask of 022 makes it)
    server = fresh_server(tmp_path).start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, server.url, server.token)
            account = await api.account("at-rest@example.com")
            balance = await api.balance(account["id"], "USD")
            await api.deposit(balance["id"], "12.34")
            key = await api.post(f"/v1/accounts/{account['id']}/keys", headers={"Idempotency-Key": "rest-key"})
            assert key.status == 201, key
            endpoint = await api.post(
                "/v1/webhook_endpoints", {"url": "http://127.0.0.1:9/hook", "events": ["payment.succeeded"]}
            )
            assert endpoint.status == 201 and endpoint.body["secret"].startswith("whsec_"), endpoint
            secrets = {"webhook secret": endpoint.body["secret"], "API key token": key.body["token"]}
            modes = _modes(data)  # while it runs: the WAL and shared-memory files exist now
        assert server.stop() == 0
    finally:
        server.stop()
    modes.update(_modes(data))
    loose = {name: oct(mode) for name, mode in modes.items() if mode & 0o077}
    assert not loose, f"readable by others: {loose}"
    assert any(name.endswith("-wal") for name in modes), sorted(modes)  # the check saw the WAL files
    for path in (p for p in data.rglob("*") if p.is_file()):
        content = path.read_bytes()
        for what, secret in secrets.items():
            assert secret.encode() not in content, f"{path.relative_to(data)} holds the {what} in the clear"
