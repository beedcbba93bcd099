"""The direct coordinator-to-shard stream (actors.channel), over real loopback sockets:
replies match their calls, a raising method raises at the caller, a peer without the
secret gets nothing, and a broken stream fails its calls with ChannelClosed (the caller
then sends them through Ray)."""

from __future__ import annotations

import asyncio

import pytest

from actors.channel import Channel, ChannelClosed, ChannelServer, RemoteError


class Target:
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.seen: list[int] = []

    async def echo(self, n: int, blob: bytes) -> list[object]:
        self.seen.append(n)
        if n % 2:  # odd calls answer after even ones: replies must find their callers
            await self.release.wait()
        return [n, blob]

    async def fail(self) -> None:
        raise ValueError("no such balance")

    async def hang(self) -> None:
        await asyncio.Event().wait()


async def connected(server: ChannelServer, secret: bytes | None = None) -> Channel:
    async def address() -> tuple[str, int, bytes]:
        host, port, real = await server.address()
        return host, port, real if secret is None else secret

    channel = Channel(address)
    with pytest.raises(ChannelClosed):  # not up yet: this first call must go another way
        await channel.call("echo", 0, b"")
    for _ in range(100):
        if channel.up:
            break
        await asyncio.sleep(0.01)
    return channel


async def test_replies_reach_their_callers_and_errors_raise_there() -> None:
    target = Target()
    server = ChannelServer({"echo": target.echo, "fail": target.fail}, "127.0.0.1")
    channel = await connected(server)
    assert channel.up
    calls = [asyncio.ensure_future(channel.call("echo", n, bytes([n]) * n)) for n in range(1, 9)]
    await asyncio.sleep(0.05)
    target.release.set()
    assert await asyncio.gather(*calls) == [[n, bytes([n]) * n] for n in range(1, 9)]
    with pytest.raises(RemoteError, match="ValueError: no such balance"):
        await channel.call("fail")
    assert server.calls == 9
    channel.close()
    await server.close()


async def test_a_peer_without_the_secret_is_not_served() -> None:
    target = Target()
    server = ChannelServer({"echo": target.echo}, "127.0.0.1")
    channel = await connected(server, secret=b"x" * 32)
    with pytest.raises(ChannelClosed):  # the server hung up on it, before or during the call
        for _ in range(100):
            await channel.call("echo", 2, b"")
            await asyncio.sleep(0.01)
    assert target.seen == [] and server.calls == 0
    await server.close()


async def test_a_broken_stream_fails_the_calls_waiting_on_it() -> None:
    target = Target()
    server = ChannelServer({"hang": target.hang}, "127.0.0.1")
    channel = await connected(server)
    waiting = asyncio.ensure_future(channel.call("hang"))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    channel._writer.transport.abort()  # type: ignore[union-attr]  # as a restarted shard's socket would
    with pytest.raises(ChannelClosed):
        await waiting
    await server.close()
