"""The operator console at /console: Jinja2 pages whose scripts call the REST API itself.

The pages are rendered here (layout, navigation, forms, the session's CSRF token); what
they show and what their forms do goes through `/v1` from the browser with the session
cookie, so the console can do exactly what the API allows and answers with its errors.
Everything it loads is served from the package (`static/`, with uPlot and Alpine.js
vendored): it works offline, and its Content-Security-Policy admits scripts of this
origin only.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from importlib.resources import files
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
import msgspec
from aiohttp import web

from actors.logs import event
from actors.settings import package_version
from gateway.auth import Authenticator
from gateway.console.session import CSRF_FIELD, Sessions
from gateway.console.signins import FailedSignIns
from gateway.errors import ApiError
from gateway.keys import AUTH, CLIENT, DIRECTORY, SETTINGS
from ledger.money import format_amount
from ledger.records import EVENT_TYPES, event_id
from ledger.results import PaymentStatus

SESSIONS = web.AppKey("console_sessions", Sessions)
FAILED_SIGNINS = web.AppKey("console_failed_signins", FailedSignIns)
log = logging.getLogger("rayledger.console")
PACKAGE = files("gateway.console")
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(PACKAGE / "templates")),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
# Pages: path, template, title. `{id}` pages show one resource.
PAGES = [
    ("/console", "dashboard.html", "Dashboard"),
    ("/console/accounts", "accounts.html", "Accounts"),
    ("/console/accounts/{id}", "account.html", "Account"),
    ("/console/balances/{id}", "balance.html", "Balance"),
    ("/console/payments", "payments.html", "Payments"),
    ("/console/payments/{id}", "payment.html", "Payment"),
    ("/console/transfers", "transfers.html", "Transfers"),
    ("/console/transfers/{id}", "transfer.html", "Transfer"),
    ("/console/holds", "holds.html", "Holds"),
    ("/console/holds/{id}", "hold.html", "Hold"),
    ("/console/currencies", "currencies.html", "Currencies and FX"),
    ("/console/events", "events.html", "Activity"),
    ("/console/webhooks", "webhooks.html", "Webhooks"),
    ("/console/webhooks/{id}", "webhook.html", "Webhook endpoint"),
]
FEED_PAGES = {"dashboard.html", "events.html"}
ID_PATTERN = re.compile(r"^[a-z]+_[A-Za-z0-9]+$")  # the ledger's ids: acc_…, bal_…, pay_…, tr_…, hold_…
NAV = [("/console", "Dashboard"), *((p, t) for p, _, t in PAGES[1:] if "{" not in p)]


def _render(name: str, status: int = 200, **context: Any) -> web.Response:
    body = _templates.get_template(name).render(nav=NAV, version=package_version(), **context)
    return web.Response(text=body, status=status, content_type="text/html", headers=HEADERS)


def _same_origin(request: web.Request) -> bool:
    """A form POST from a page of this origin (browsers send Origin on every POST)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser: it holds the token or the cookie anyway
    return urlsplit(origin).netloc == request.host


def _next_page(raw: str | None) -> str:
    """Where to go after signing in: a console page only (no open redirect)."""
    if raw and raw.startswith("/console") and "//" not in raw and "\\" not in raw:
        return raw
    return "/console"


def _signin_page(request: web.Request, status: int = 200, **context: Any) -> web.Response:
    """The sign-in form; it names the token file of this server's data directory."""
    token_path = str(request.app[SETTINGS].admin_token_path)
    return _render("signin.html", status, token_path=token_path, **context)


async def signin_page(request: web.Request) -> web.Response:
    if request.app[SESSIONS].nonce(request) is not None:
        raise web.HTTPSeeOther(_next_page(request.query.get("next")))
    return _signin_page(request, next=_next_page(request.query.get("next")), error=None)


async def signin(request: web.Request) -> web.Response:
    """Signs in with the admin token; every outcome is logged (with the client's address,
    never the token), and failures are limited per address (gateway.console.signins)."""
    form = await request.post()
    next_page = _next_page(str(form.get("next", "")))
    token = str(form.get("token", "")).strip()
    auth: Authenticator = request.app[AUTH]
    address = request.remote or "unknown"
    failures = request.app[FAILED_SIGNINS]
    if not _same_origin(request):
        event(log, "console_signin", logging.WARNING, outcome="cross_origin", client=address)
        error = "This form was sent from another origin (behind a proxy: keep the Host header as the browser sent it)."
        return _signin_page(request, status=403, next=next_page, error=error)
    retry_after_s = failures.retry_after_s(address)
    if retry_after_s is not None:
        event(log, "console_signin", logging.WARNING, outcome="limited", client=address)
        error = f"Too many failed sign-ins from your address: try again in {retry_after_s} s."
        response = _signin_page(request, status=429, next=next_page, error=error)
        response.headers["Retry-After"] = str(retry_after_s)
        return response
    if not auth.is_admin_token(token):
        failures.failed(address)
        event(log, "console_signin", logging.WARNING, outcome="failure", client=address)
        return _signin_page(request, status=401, next=next_page, error="That is not the admin token.")
    failures.succeeded(address)
    event(log, "console_signin", outcome="success", client=address)
    response = web.HTTPSeeOther(next_page)
    Sessions.set_cookie(request, response, request.app[SESSIONS].issue())
    raise response


async def signout(request: web.Request) -> web.Response:
    sessions = request.app[SESSIONS]
    nonce = sessions.nonce(request)
    form = await request.post()
    if nonce is None:  # nothing to end; and no other site's form may clear the cookie
        raise web.HTTPSeeOther("/console/signin")
    if not (_same_origin(request) and sessions.csrf_ok(nonce, str(form.get(CSRF_FIELD, "")))):
        raise web.HTTPForbidden(text="sign-out needs the page's CSRF token")
    response = web.HTTPSeeOther("/console/signin")
    Sessions.clear_cookie(response)
    raise response


def _session(request: web.Request) -> str:
    """The session's nonce, or off to the sign-in page (coming back here after)."""
    nonce = request.app[SESSIONS].nonce(request)
    if nonce is None:
        raise web.HTTPSeeOther(f"/console/signin?next={quote(request.path_qs, safe='/?=&')}")
    return nonce


def _page(template: str, title: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def page(request: web.Request) -> web.Response:
        nonce = _session(request)
        some_id = request.match_info.get("id", "")
        if some_id and not ID_PATTERN.match(some_id):  # it goes into the page's API paths
            raise web.HTTPNotFound()
        # The live feed streams what happens after the page was made (its list shows the
        # rest): after an id below every event of this instant, as a resumed stream would.
        stream_after = event_id(time.time_ns() // 1_000_000, "a00", 0) if template in FEED_PAGES else ""
        return _render(
            template,
            title=title,
            path=request.path,
            id=some_id,
            csrf=request.app[SESSIONS].csrf_token(nonce),
            statuses=sorted(PaymentStatus),
            event_types=list(EVENT_TYPES),
            stream_after=stream_after,
        )

    return page


async def activity(request: web.Request) -> web.Response:
    """Payments decided per minute over the last hour, with volumes as decimal strings."""
    if request.app[SESSIONS].nonce(request) is None:  # the page's script signs in again
        raise ApiError("unauthorized", "the console session has ended: sign in again")
    minutes = await request.app[CLIENT].activity()
    codes = sorted({c for m in minutes for c in m.volume})
    exponents = {c: await request.app[DIRECTORY].exponent(c) for c in codes}
    body = {
        "currencies": codes,
        "minutes": [
            {
                "start": m.start_ms // 1000,
                "succeeded": m.succeeded,
                "failed": m.failed,
                "volume": {c: format_amount(v, exponents[c]) for c, v in m.volume.items()},
            }
            for m in minutes
        ],
    }
    return web.Response(
        body=msgspec.json.encode(body), content_type="application/json", headers={"Cache-Control": "no-store"}
    )


def add_console(app: web.Application, sessions: Sessions) -> None:
    app[SESSIONS] = sessions
    app[FAILED_SIGNINS] = FailedSignIns()
    app.router.add_get("/console/signin", signin_page)
    app.router.add_post("/console/signin", signin)
    app.router.add_post("/console/signout", signout)
    app.router.add_get("/console/activity.json", activity)
    for path, template, title in PAGES:
        app.router.add_get(path, _page(template, title))
    app.router.add_static("/console/static", str(PACKAGE / "static"))
