"""The HTTP ingress inside a PaymentCoordinator actor (docs/design.md §6), as Ray Serve runs its
HTTP proxies as actors: a request reaches its coordinator with no Ray hop.

    client ─HTTP─▶ aiohttp app ─▶ PaymentBatcher ─▶ this coordinator (a local call)
                                                    ─▶ one Ray call per shard, in parallel

`IngressCoordinator` is what each coordinator actor runs: two parts, a plain
`PaymentCoordinator` and the `HttpIngress` that serves the REST app beside it on the same
event loop (composed, not inherited: the coordinator knows nothing of HTTP). The app's
`LedgerClient` reaches this coordinator as a plain object (no pickling, no msgpack of the
batch) and every other actor through Ray. `rayledger serve`
(the supervisor) calls `serve_http` on every coordinator, again every second, so that a
coordinator Ray restarted after a crash serves again (the call is idempotent); several
coordinators on one node share the port with SO_REUSEPORT.

Idempotency keys keep exactly one owner: a key's payment id is drawn so that it belongs to
the coordinator that owns the key (`gateway.payments.payment_id_for`), and the batcher
sends it there (over Ray, when that is another coordinator). A payment without a key gets
an id owned by this coordinator, so it never leaves the process before its shard calls.
"""

from __future__ import annotations

import asyncio
import logging
from typing import ClassVar

from aiohttp import web

from actors.client import LedgerClient
from actors.coordinator import PaymentCoordinator
from actors.logs import event
from actors.peers import Peer, PeerLookup, ray_lookup
from actors.settings import Settings
from actors.topology import coordinator_name
from gateway.app import create_app
from journal import Journal

log = logging.getLogger("rayledger.ingress")
STOP_DRAIN_S = 10.0  # in-flight requests get this long to finish when the ingress stops


class HttpIngress:
    """The REST app served beside a coordinator, on its event loop."""

    def __init__(self, coordinator: PaymentCoordinator) -> None:
        self.coordinator = coordinator
        self._runner: web.AppRunner | None = None
        self._starting: asyncio.Task[None] | None = None

    def _local_first(self) -> PeerLookup:
        """This coordinator as a plain object, every other actor by its Ray handle."""
        settings = self.coordinator.settings
        me, remote = Peer(self.coordinator), ray_lookup(settings.namespace)
        name = coordinator_name(self.coordinator.index)
        return lambda wanted: me if wanted == name else remote(wanted)

    async def serve_http(self, host: str, port: int, admin_token_hash: bytes, seal_key: bytes) -> str:
        """Serve the API on host:port (idempotent); returns the event loop's class name."""
        if self._runner is None:
            failed = (
                self._starting is not None
                and self._starting.done()
                and (self._starting.cancelled() or self._starting.exception() is not None)
            )
            if self._starting is None or failed:  # a failed start (the port taken, say) is tried again
                self._starting = asyncio.get_running_loop().create_task(
                    self._start(host, port, admin_token_hash, seal_key)
                )
            await asyncio.shield(self._starting)
        return type(asyncio.get_running_loop()).__module__

    async def _start(self, host: str, port: int, admin_token_hash: bytes, seal_key: bytes) -> None:
        await self.coordinator.ready()
        settings, index = self.coordinator.settings, self.coordinator.index
        client = LedgerClient(settings, self._local_first())
        app = create_app(settings, client, admin_token_hash, ingress=index, seal_key=seal_key)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=STOP_DRAIN_S)
        await runner.setup()
        try:
            # reuse_port: the coordinators of one node (and a restarted one whose predecessor's
            # socket is still closing) listen on the same port; the kernel spreads connections.
            await web.TCPSite(runner, host, port, reuse_port=True).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        event(log, "ingress_serving", actor=coordinator_name(index), host=host, port=port)

    async def stop_http(self) -> None:
        """Stop taking connections, let requests in flight finish, send owed phase two
        (the app's cleanup); then the actor only serves Ray calls."""
        runner, self._runner, self._starting = self._runner, None, None
        if runner is not None:
            await runner.cleanup()


class IngressCoordinator:
    """The coordinator actor `rayledger serve` runs: a coordinator and its ingress, as parts.
    Ray calls reach both parts' public methods (`actors.factory.ray_shell` reads `PARTS`)."""

    PARTS: ClassVar[dict[str, type]] = {"coordinator": PaymentCoordinator, "ingress": HttpIngress}

    def __init__(
        self, settings: Settings, index: int, peers: PeerLookup | None = None, journal: Journal | None = None
    ) -> None:
        self.coordinator = PaymentCoordinator(settings, index, peers, journal)
        self.ingress = HttpIngress(self.coordinator)

    def __repr__(self) -> str:
        return repr(self.coordinator)
