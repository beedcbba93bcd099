from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.api import Api
from tests.support.server import Server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real server shared by the functional tests of every module: starting one is
    ~10 s, most of what a module of them costs. A test that stops, kills or restarts a
    server makes its own (`fresh_server`); one that counts something counts what it adds."""
    srv = Server(tmp_path_factory.mktemp("ledger") / "data").start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def api(server: Server, session: aiohttp.ClientSession) -> Api:
    return Api(session, server.url, server.token)


def fresh_server(tmp_path: Path, *args: str) -> Server:
    return Server(tmp_path / "data", *args)
