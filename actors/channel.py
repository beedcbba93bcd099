"""A direct stream between a coordinator and a shard, for the calls on every payment's path.

Why: a Ray actor call between two busy processes on this 2-core machine took 4-5 ms each
way under load (the shard's own work and fsync were 3 ms of a 17 ms phase one): the call
crosses the caller's core-worker thread, gRPC and the callee's core-worker thread before
it reaches the callee's event loop, and each hop waits for a core. A stream between the two
event loops is one socket write and one read each way. Ray still places, names, supervises
and restarts the shard, and every other call goes through Ray; only `hold` and `settle`,
made once per batch per shard, take the stream when it is up.

Failure keeps Ray's semantics: a call whose stream breaks is sent again through Ray, which
delivers it to the shard (or its next incarnation) as it would have; shard methods are
idempotent, so a call that ran before its stream broke runs harmlessly twice. The stream
reconnects in the background, asking the shard (through Ray) where it listens now.

The shard listens on its node's address on a port of the system's choosing, and a peer
must present the shard's secret, handed out only through Ray (whose own channel is
authenticated), before any call: nothing reaches the shard's money that Ray would not pass.

Frames: a 4-byte big-endian length, then msgpack: requests `[id, method, args]`, replies
`[id, ok, value]` where a failed call's value is `[exception type name, message]`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

log = logging.getLogger("rayledger.channel")

_LENGTH = struct.Struct(">I")
FRAME_BYTES_MAX = 64 * 1024 * 1024
CONNECT_TIMEOUT_S = 5.0


def node_address() -> str:
    """The address peers on other nodes reach this process at (loopback outside Ray)."""
    import ray

    return ray.util.get_node_ip_address() if ray.is_initialized() else "127.0.0.1"


class ChannelClosed(ConnectionError):
    """The stream broke or is not up: send the call another way."""


class RemoteError(Exception):
    """The called method raised; its type name and message."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    if length > FRAME_BYTES_MAX:
        raise ConnectionError(f"frame of {length} bytes")
    return await reader.readexactly(length)


def _frame(encoder: msgspec.msgpack.Encoder, value: object) -> bytes:
    body = encoder.encode(value)
    return _LENGTH.pack(len(body)) + body


class ChannelServer:
    """Serves `methods` (name -> coroutine function) to peers that know the secret."""

    def __init__(self, methods: dict[str, Callable[..., Awaitable[Any]]], host: str) -> None:
        self._methods = methods
        self._host = host
        self.secret = secrets.token_bytes(32)
        self._server: asyncio.Server | None = None
        self._starting: asyncio.Task[asyncio.Server] | None = None
        self._encoder = msgspec.msgpack.Encoder()
        self.calls = 0  # served over streams (shard stats)

    async def address(self) -> tuple[str, int, bytes]:
        """Where to connect and the secret to present; listens from the first ask."""
        if self._server is None:
            if self._starting is None:
                self._starting = asyncio.get_running_loop().create_task(
                    asyncio.start_server(self._serve, self._host, 0)
                )
            self._server = await asyncio.shield(self._starting)
        port = self._server.sockets[0].getsockname()[1]
        return self._host, port, self.secret

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        running: set[asyncio.Task[None]] = set()
        try:
            if not hmac.compare_digest(await _read_frame(reader), self.secret):
                return
            while True:
                call_id, method, args = msgspec.msgpack.decode(await _read_frame(reader))
                self.calls += 1
                task = asyncio.get_running_loop().create_task(self._call(writer, call_id, method, args))
                running.add(task)
                task.add_done_callback(running.discard)
        except (ConnectionError, asyncio.IncompleteReadError, msgspec.DecodeError, ValueError):
            pass  # gone, or not speaking this protocol: hang up
        finally:
            writer.close()

    async def _call(self, writer: asyncio.StreamWriter, call_id: int, method: str, args: list[Any]) -> None:
        try:
            reply = [call_id, True, await self._methods[method](*args)]
        except Exception as exc:  # the caller learns it, as Ray would tell it
            reply = [call_id, False, [type(exc).__name__, str(exc)]]
        if not writer.is_closing():
            writer.write(_frame(self._encoder, reply))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()


class Channel:
    """The caller's end: one stream, many calls in flight, matched to replies by id."""

    def __init__(self, address: Callable[[], Awaitable[tuple[str, int, bytes]]]) -> None:
        self._address = address  # asks the shard, through Ray, where it listens
        self._writer: asyncio.StreamWriter | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._encoder = msgspec.msgpack.Encoder()

    @property
    def up(self) -> bool:
        return self._writer is not None

    def connect_soon(self) -> None:
        """Start connecting in the background (calls meanwhile go another way)."""
        if self._writer is None and self._connecting is None:
            self._connecting = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        try:
            host, port, secret = await self._address()
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT_S)
            writer.write(_LENGTH.pack(len(secret)) + secret)
            self._writer = writer
            asyncio.get_running_loop().create_task(self._read(reader, writer))
        except Exception as exc:  # the shard is restarting, or unreachable: Ray carries the calls
            log.debug("channel not connected: %s", exc)
        finally:
            self._connecting = None

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                call_id, ok, value = msgspec.msgpack.decode(await _read_frame(reader))
                future = self._waiting.pop(call_id, None)
                if future is not None and not future.done():
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(RemoteError(*value))
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            if self._writer is writer:
                self._writer = None
            writer.close()
            waiting, self._waiting = self._waiting, {}
            for future in waiting.values():
                if not future.done():
                    future.set_exception(ChannelClosed("the stream to the shard broke"))

    async def call(self, method: str, *args: Any) -> Any:
        """Raises ChannelClosed if the stream is not up or breaks before the reply."""
        writer = self._writer
        if writer is None or writer.is_closing():
            self.connect_soon()
            raise ChannelClosed("no stream to the shard yet")
        self._next_id += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[self._next_id] = future
        writer.write(_frame(self._encoder, [self._next_id, method, args]))
        return await future

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
