"""The direct coordinator-to-shard stream (actors.channel), over real loopback sockets:
replies match their calls, a raising method raises at the caller, a peer without the
secret gets nothing (nor does a coordinator talk to a listener without it), and a broken
or silent stream fails its calls with ChannelClosed (the caller then sends them through Ray)."""

from __future__ import annotations

import asyncio

import pytest

import actors.channel
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
    await asyncio.sleep(0.05)  # the server's ends of the streams see them close


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
    await asyncio.sleep(0.05)  # the server's ends of the streams see them close


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
    await asyncio.sleep(0.05)  # the server's ends of the streams see them close


async def test_a_listener_without_the_secret_is_not_trusted() -> None:
    # As if the shard's port were reused by something else: it cannot prove the secret.
    got: list[bytes] = []

    async def impostor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"n" * 16)
        got.append(await reader.readexactly(16 + 32))
        writer.write(b"p" * 32)  # a proof it cannot compute
        await reader.read()
        writer.close()

    listener = await asyncio.start_server(impostor, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]

    async def address() -> tuple[str, int, bytes]:
        return "127.0.0.1", port, b"s" * 32

    channel = Channel(address)
    with pytest.raises(ChannelClosed):
        await channel.call("echo", 1, b"")
    for _ in range(50):
        await asyncio.sleep(0.01)
    assert got and b"s" * 32 not in got[0]  # the secret itself never crossed the stream
    assert not channel.up
    with pytest.raises(ChannelClosed):
        await channel.call("echo", 1, b"")
    listener.close()
    await asyncio.sleep(0.05)


async def test_a_peer_sending_garbage_is_hung_up_on_before_any_call() -> None:
    target = Target()
    server = ChannelServer({"echo": target.echo}, "127.0.0.1")
    host, port, _ = await server.address()
    reader, writer = await asyncio.open_connection(host, port)
    await reader.readexactly(16)  # the server's nonce
    writer.write(b"\xff" * 4096)
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed on us
    assert server.calls == 0 and target.seen == []
    writer.close()
    await server.close()
    await asyncio.sleep(0.05)  # the server's ends of the streams see them close


async def test_a_call_with_no_reply_by_its_deadline_drops_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(actors.channel, "CALL_TIMEOUT_S", 0.2)
    target = Target()
    server = ChannelServer({"hang": target.hang, "echo": target.echo}, "127.0.0.1")
    channel = await connected(server)
    with pytest.raises(ChannelClosed, match="no reply"):
        await channel.call("hang")
    assert not channel.up  # the next calls go another way until it reconnects
    with pytest.raises(ChannelClosed):
        await channel.call("echo", 2, b"")
    await server.close()
    await asyncio.sleep(0.05)  # the server's ends of the streams see them close
