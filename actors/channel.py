"""A direct stream between a coordinator and a shard, for the calls on every payment's path.

Why: a Ray actor call between two busy processes on this 2-core machine took 4-5 ms each
way under load (the shard's own work and fsync were 3 ms of a 17 ms phase one): the call
crosses the caller's core-worker thread, gRPC and the callee's core-worker thread before
it reaches the callee's event loop, and each hop waits for a core. A stream between the two
event loops is one socket write and one read each way. Ray still places, names, supervises
and restarts the shard, and every other call goes through Ray; only `phase_one` and `phase_two`,
made once per batch per shard, take the stream when it is up.

Failure keeps Ray's semantics: a call whose stream breaks is sent again through Ray, which
delivers it to the shard (or its next incarnation) as it would have; shard methods are
idempotent, so a call that ran before its stream broke runs harmlessly twice. (One case is
weaker than Ray's: a call dropped at its deadline by a shard that is alive but stalled
for CALL_TIMEOUT_S may still run when the shard wakes. It then runs next to its Ray copy,
which is harmless; it would only open a stray hold if it ran after the phase two that the
Ray copy's answer led to, a full round trip later.) The stream
reconnects in the background, asking the shard (through Ray) where it listens now.

The shard listens on its node's address on a port of the system's choosing. Both ends
prove they hold the shard incarnation's secret, handed out only through Ray, before any
call: the server sends a nonce, the client answers with its own nonce and an HMAC over
both, and the server answers with an HMAC the other way round. The secret never crosses the
stream, a recorded handshake cannot be replayed, and a coordinator never talks to whatever
else later listens on a reused port. Before the handshake a peer can send only those fixed
few bytes, within HANDSHAKE_TIMEOUT_S. (Like Ray's own traffic without TLS, the stream is
not encrypted: run the cluster on a private network.)

A call has a deadline (CALL_TIMEOUT_S), and the client's socket gives up on data left
unacknowledged for USER_TIMEOUT_MS: a shard whose node vanished without closing its
sockets costs a few seconds, then its calls go through Ray, which restarts it elsewhere.

Frames: a 4-byte big-endian length, then msgpack: requests `[id, method, args]`, replies
`[id, ok, value]` where a failed call's value is `[exception type name, message]`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

log = logging.getLogger("rayledger.channel")

_LENGTH = struct.Struct(">I")
FRAME_BYTES_MAX = 64 * 1024 * 1024
CONNECT_TIMEOUT_S = 5.0
HANDSHAKE_TIMEOUT_S = 5.0
CALL_TIMEOUT_S = 30.0  # past the journal's own busy timeout: only a lost shard takes this long
USER_TIMEOUT_MS = 10_000
RECONNECT_S_MIN, RECONNECT_S_MAX = 0.1, 2.0
_NONCE = 16
_MAC = hashlib.sha256().digest_size
_BROKEN = (ConnectionError, OSError, asyncio.IncompleteReadError, msgspec.DecodeError, ValueError, TypeError)


def _mac(secret: bytes, *parts: bytes) -> bytes:
    return hmac.new(secret, b"".join(parts), hashlib.sha256).digest()


def node_address() -> str:
    """The address peers on other nodes reach this process at (loopback outside Ray)."""
    import ray

    return ray.util.get_node_ip_address() if ray.is_initialized() else "127.0.0.1"  # type: ignore[no-untyped-call]


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
        """Where to connect and the secret to prove; listens from the first ask."""
        if self._server is None:
            if self._starting is None:
                self._starting = asyncio.get_running_loop().create_task(
                    asyncio.start_server(self._serve, self._host, 0)
                )
            try:
                self._server = await asyncio.shield(self._starting)
            except Exception:
                self._starting = None  # the next ask tries again
                raise
        port = self._server.sockets[0].getsockname()[1]
        return self._host, port, self.secret

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        ours = secrets.token_bytes(_NONCE)
        writer.write(ours)
        theirs_and_mac = await asyncio.wait_for(reader.readexactly(_NONCE + _MAC), HANDSHAKE_TIMEOUT_S)
        theirs, mac = theirs_and_mac[:_NONCE], theirs_and_mac[_NONCE:]
        if not hmac.compare_digest(mac, _mac(self.secret, b"client", ours, theirs)):
            return False
        writer.write(_mac(self.secret, b"server", theirs, ours))
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        running: set[asyncio.Task[None]] = set()
        try:
            if not await self._handshake(reader, writer):
                return
            while True:
                call_id, method, args = msgspec.msgpack.decode(await _read_frame(reader))
                self.calls += 1
                task = asyncio.get_running_loop().create_task(self._call(writer, call_id, method, args))
                running.add(task)
                task.add_done_callback(running.discard)
        except (*_BROKEN, TimeoutError):
            pass  # gone, silent, or not speaking this protocol: hang up
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
            self._server.close()  # stops listening; open streams end with the process


class Channel:
    """The caller's end: one stream, many calls in flight, matched to replies by id."""

    def __init__(self, address: Callable[[], Awaitable[tuple[str, int, bytes]]]) -> None:
        self._address = address  # asks the shard, through Ray, where it listens
        self._writer: asyncio.StreamWriter | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._reading: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._encoder = msgspec.msgpack.Encoder()
        self._retry_s = RECONNECT_S_MIN
        self._retry_at = 0.0  # monotonic: no new attempt before (each one costs a Ray call)

    @property
    def up(self) -> bool:
        return self._writer is not None

    def connect_soon(self) -> None:
        """Start connecting in the background (calls meanwhile go another way)."""
        if self._writer is None and self._connecting is None and time.monotonic() >= self._retry_at:
            self._connecting = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            host, port, secret = await self._address()
            reader, opened = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT_S)
            writer = opened
            _bound_silence(opened)
            theirs = await asyncio.wait_for(reader.readexactly(_NONCE), HANDSHAKE_TIMEOUT_S)
            ours = secrets.token_bytes(_NONCE)
            opened.write(ours + _mac(secret, b"client", theirs, ours))
            proof = await asyncio.wait_for(reader.readexactly(_MAC), HANDSHAKE_TIMEOUT_S)
            if not hmac.compare_digest(proof, _mac(secret, b"server", ours, theirs)):
                raise ConnectionError("the listener does not hold this shard's secret")
        except Exception as exc:  # restarting, unreachable, or not our shard: Ray carries the calls
            if writer is not None:
                writer.close()
            self._retry_at = time.monotonic() + self._retry_s
            self._retry_s = min(self._retry_s * 2, RECONNECT_S_MAX)
            log.debug("channel not connected: %s", exc)
        else:
            self._retry_s = RECONNECT_S_MIN
            self._writer = opened
            self._reading = asyncio.get_running_loop().create_task(self._read(reader, opened))
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
        except _BROKEN:
            pass
        finally:
            self._drop(writer)

    def _drop(self, writer: asyncio.StreamWriter) -> None:
        """The stream is done for: every call still waiting on it goes another way."""
        if self._writer is writer:
            self._writer = None
        writer.transport.abort()  # unsent calls are dropped, not delivered late
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(ChannelClosed("the stream to the shard broke"))

    async def call(self, method: str, *args: Any) -> Any:
        """Raises ChannelClosed if the stream is not up, breaks, or stays silent past the
        deadline (then the stream is dropped: a shard that stopped answering is not trusted
        with the next call either)."""
        writer = self._writer
        if writer is None or writer.is_closing():
            self.connect_soon()
            raise ChannelClosed("no stream to the shard yet")
        self._next_id += 1
        call_id = self._next_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = future
        writer.write(_frame(self._encoder, [call_id, method, args]))
        try:
            return await asyncio.wait_for(future, CALL_TIMEOUT_S)
        except TimeoutError:
            self._drop(writer)
            raise ChannelClosed(f"no reply from the shard in {CALL_TIMEOUT_S} s") from None
        finally:
            self._waiting.pop(call_id, None)

    def close(self) -> None:
        if self._writer is not None:
            self._drop(self._writer)


def _bound_silence(writer: asyncio.StreamWriter) -> None:
    """Notice a peer that vanished: keepalive probes while idle, and a bound on how long
    written data may stay unacknowledged (Linux options; elsewhere the call deadline does)."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    for name, value in (
        ("TCP_KEEPIDLE", 5),
        ("TCP_KEEPINTVL", 2),
        ("TCP_KEEPCNT", 3),
        ("TCP_USER_TIMEOUT", USER_TIMEOUT_MS),
    ):
        if hasattr(socket, name):
            options.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    for level, option, value in options:
        try:
            sock.setsockopt(level, option, value)
        except OSError:  # not offered here: the call deadline still bounds the wait
            pass
