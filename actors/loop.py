"""uvloop in every ledger process: Ray's setup hook (`worker_process_setup_hook`) runs
`use_uvloop` when a worker starts, before Ray creates an async actor's event loop, so the
actors' loops and the ingress's aiohttp server run on uvloop (asyncio's own loop costs
more per callback, and an ingress runs several callbacks per request)."""

from __future__ import annotations

import asyncio

SETUP_HOOK = "actors.loop.use_uvloop"


def use_uvloop() -> None:
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
