"""The console at /console against a real server: its session and CSRF rules over HTTP, and
an operator's day in headless Chromium (Debian's `chromium`, driven by Playwright): sign in,
find an account by email, open its statement, deposit and pay through the forms and see
both in the feed and the statement, void a hold, disable and enable the account, sign out; a phone-width page that fits;
and a screenshot of the dashboard, saved under build/screenshots for the README."""

from __future__ import annotations

import html
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.api import Api
from tests.support.server import Server
from tests.support.waiting import until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As the machine's probe starts it: no sandbox as root, and no background connections
# (the network is closed; Chromium would otherwise keep trying to reach Google's hosts).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
WAIT_MS = 20_000  # for a page's data or an event to show: generous on a loaded machine


def browser_like() -> aiohttp.ClientSession:
    """A session that keeps cookies set by an IP address, as a browser does."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


def unique_email(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}@example.com"


async def signed_in(session: aiohttp.ClientSession, server: Server) -> str:
    """Sign in over HTTP; the session cookie's Set-Cookie header."""
    async with session.post(
        f"{server.url}/console/signin", data={"token": server.token, "next": "/console"}, allow_redirects=False
    ) as response:
        assert response.status == 303, await response.text()
        assert response.headers["Location"] == "/console"
        return response.headers["Set-Cookie"]


async def csrf_of(session: aiohttp.ClientSession, server: Server) -> str:
    async with session.get(f"{server.url}/console", allow_redirects=False) as response:
        assert response.status == 200
        found = re.search(r'name="csrf-token" content="([^"]+)"', await response.text())
    assert found is not None
    return found.group(1)


# -- over HTTP ------------------------------------------------------------------------------
async def test_pages_need_a_session_and_sign_in_needs_the_admin_token(server: Server) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/console/accounts?email=x", allow_redirects=False) as response:
            assert response.status == 303
            assert response.headers["Location"] == "/console/signin?next=/console/accounts?email=x"
        async with session.post(f"{server.url}/console/signin", data={"token": "rla_wrong"}) as response:
            assert response.status == 401
            assert "not the admin token" in await response.text()
            assert "Set-Cookie" not in response.headers
        # Another site's page cannot sign a browser in (to the attacker's liking or not).
        async with session.post(
            f"{server.url}/console/signin",
            data={"token": server.token},
            headers={"Origin": "http://evil.example"},
            allow_redirects=False,
        ) as response:
            assert response.status == 403 and "Set-Cookie" not in response.headers
        # A page outside the console as the place to go after signing in is not followed.
        async with session.post(
            f"{server.url}/console/signin",
            data={"token": server.token, "next": "//evil.example/"},
            allow_redirects=False,
        ) as response:
            assert response.headers["Location"] == "/console"


async def test_the_sign_in_page_names_the_token_file_of_the_data_directory_in_use(server: Server) -> None:
    """Not a fixed `data/admin_token`: the server here runs on a data directory elsewhere."""
    token_file = f"<code>{html.escape(str(server.data_dir / 'admin_token'))}</code>"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/console/signin") as response:
            assert response.status == 200 and token_file in await response.text()
        async with session.post(f"{server.url}/console/signin", data={"token": "rla_wrong"}) as response:
            assert response.status == 401 and token_file in await response.text()


async def test_the_session_cookie_is_http_only_strict_and_signed(server: Server) -> None:
    async with browser_like() as session:
        morsel = SimpleCookie(await signed_in(session, server))["rl_session"]
        assert morsel["httponly"] and morsel["samesite"] == "Strict" and morsel["path"] == "/"
        async with session.get(f"{server.url}/console", allow_redirects=False) as response:
            assert response.status == 200
            policy = response.headers["Content-Security-Policy"]
            assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
            page = await response.text()
        # Everything the page loads comes from the ledger itself (it works offline).
        assert not re.search(r'(?:src|href)="(?:https?:)?//', page)
    # A page id goes into the page's API paths: only the ledger's ids are pages.
    async with browser_like() as session:
        await signed_in(session, server)
        crafted = f"{server.url}/console/accounts/..%2Fbalances%2Fbal_x"
        async with session.get(crafted, allow_redirects=False) as response:
            assert response.status == 404
        # Another site's form cannot sign the operator out (no cookie comes with it, so
        # nothing is cleared).
        async with aiohttp.ClientSession() as other_site:
            async with other_site.post(f"{server.url}/console/signout", allow_redirects=False) as response:
                assert response.status == 303 and "Set-Cookie" not in response.headers
    # A cookie that is not ASCII is no session (and no server error).
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/v1/currencies", headers={"Cookie": "rl_session=1.a.\u00e9"}) as response:
            assert response.status == 401
    forged = morsel.value.rsplit(".", 1)[0] + ".AAAA"
    async with aiohttp.ClientSession(
        cookies={"rl_session": forged}, cookie_jar=aiohttp.CookieJar(unsafe=True)
    ) as session:
        async with session.get(f"{server.url}/console", allow_redirects=False) as response:
            assert response.status == 303


async def test_a_session_changes_nothing_without_its_csrf_token(server: Server, api: Api) -> None:
    account = await api.account(unique_email("csrf"))
    balance = await api.balance(account["id"], "USD")
    deposit = {"balance_id": balance["id"], "amount": "5.00"}
    async with browser_like() as session:
        await signed_in(session, server)
        async with session.post(f"{server.url}/v1/deposits", json=deposit) as response:
            assert response.status == 403  # the cookie alone, as a forged cross-site form would send it
        async with session.post(f"{server.url}/v1/deposits", json=deposit, headers={"X-CSRF-Token": "0" * 43}) as r:
            assert r.status == 403
        async with session.get(f"{server.url}/v1/balances/{balance['id']}") as response:
            assert (await response.json())["amount"] == "0.00"  # reads need no token
        csrf = await csrf_of(session, server)
        async with session.post(f"{server.url}/v1/deposits", json=deposit, headers={"X-CSRF-Token": csrf}) as r:
            assert r.status == 201 and (await r.json())["status"] == "success"
        async with session.post(f"{server.url}/console/signout", data={}, allow_redirects=False) as response:
            assert response.status == 403  # sign-out is a change too
        async with session.post(
            f"{server.url}/console/signout", data={"csrf_token": csrf}, allow_redirects=False
        ) as response:
            assert response.status == 303 and response.headers["Location"] == "/console/signin"
        async with session.get(f"{server.url}/console", allow_redirects=False) as response:
            assert response.status == 303  # the browser dropped the cookie


async def activity(session: aiohttp.ClientSession, server: Server) -> dict[str, Any]:
    async with session.get(f"{server.url}/console/activity.json", allow_redirects=False) as response:
        assert response.status == 200
        return await response.json()  # type: ignore[no-any-return]


def hour_total(activity: dict[str, Any], currency: str) -> tuple[int, Decimal]:
    minutes = activity["minutes"]
    return sum(m["succeeded"] for m in minutes), sum(Decimal(m["volume"].get(currency, "0")) for m in minutes)


async def test_the_activity_chart_counts_payments_per_minute(server: Server, api: Api) -> None:
    account = await api.account(unique_email("chart"))
    balance = await api.balance(account["id"], "EUR")
    async with browser_like() as session:
        async with session.get(f"{server.url}/console/activity.json", allow_redirects=False) as response:
            assert response.status == 401  # the page's script then sends the browser to sign in
        await signed_in(session, server)
        before = await activity(session, server)
        await api.deposit(balance["id"], "12.34")
        await api.deposit(balance["id"], "0.66")
        refused = await api.pay(balance["id"], balance["id"], "1000.00")
        assert refused.status == 422  # same balance: refused before it is a payment, not counted
        after = await activity(session, server)
    assert "EUR" in after["currencies"]
    assert [m["start"] for m in after["minutes"]] == sorted(m["start"] for m in after["minutes"])
    (count_before, eur_before), (count_after, eur_after) = hour_total(before, "EUR"), hour_total(after, "EUR")
    assert (count_after - count_before, eur_after - eur_before) == (2, Decimal("13.00"))


# -- in a browser ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chromium() -> str:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip("needs Chromium (Debian: apt-get install chromium), as .ci/run installs it")
    return CHROMIUM


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def open_console(browser: Any, server: Server, width: int = 1280, height: int = 900) -> Any:
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    page = await browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(WAIT_MS)
    failures: list[str] = []
    page.on("pageerror", lambda error: failures.append(str(error)))
    page.failures = failures
    await page.goto(f"{server.url}/console")
    assert page.url.endswith("/console/signin?next=/console")
    await page.fill("input[name=token]", server.token)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{server.url}/console")
    return page


async def test_an_operators_day_in_the_console(server: Server, api: Api, browser: Any) -> None:
    from playwright.async_api import expect

    email = unique_email("ops")
    account = await api.account(email)
    balance = (await api.balance(account["id"], "USD"))["id"]
    payee = (await api.balance((await api.account(unique_email("payee")))["id"], "USD"))["id"]
    page = await open_console(browser, server)

    # Find the account by email, open it, open its balance's statement.
    await page.click("nav >> text=Accounts")
    await page.fill("input[name=email]", email)
    await page.click("form.filters button")
    row = page.locator("tr", has_text=email)
    await expect(row).to_have_count(1)
    await row.locator("a").first.click()
    await page.wait_for_url(f"**/console/accounts/{account['id']}")
    await page.click(f"a:text('{balance}')")
    await page.wait_for_url(f"**/console/balances/{balance}")
    await expect(page.get_by_test_id("amount")).to_have_text("0.00")

    # A deposit through its form: the answer names the payment, the statement shows it.
    deposit_form = page.locator("form", has=page.locator("h3", has_text="Deposit"))
    await deposit_form.locator("input[name=amount]").fill("25.00")
    await deposit_form.locator("button").click()
    done = deposit_form.locator("p.ok")
    await expect(done).to_contain_text("success")
    deposit_id = re.search(r"pay_\w+", await done.inner_text()).group(0)  # type: ignore[union-attr]
    await expect(page.get_by_test_id("amount")).to_have_text("25.00")
    statement = page.locator("table.statement")
    await expect(statement.locator("tr", has_text=deposit_id)).to_contain_text("25.00")

    # A payment through its form opens the payment's page.
    pay_form = page.locator("form", has=page.locator("h3", has_text="Pay"))
    await pay_form.locator("input[name=balance_to]").fill(payee)
    await pay_form.locator("input[name=amount]").fill("7.50")
    await pay_form.locator("button").click()
    await page.wait_for_url(re.compile(r".*/console/payments/pay_\w+$"))
    payment_id = page.url.rsplit("/", 1)[1]
    await expect(page.locator("dl.facts")).to_contain_text("success")
    await expect(page.locator("dl.facts")).to_contain_text("7.50 USD")
    view = await api.get(f"/v1/payments/{payment_id}")
    assert view.body["status"] == "success" and view.body["balance_to"] == payee
    # The header's search opens what an id names, and the accounts with an email.
    await page.fill("header input[name=q]", balance)
    await page.press("header input[name=q]", "Enter")
    await page.wait_for_url(f"**/console/balances/{balance}")
    await page.fill("header input[name=q]", email)
    await page.press("header input[name=q]", "Enter")
    await page.wait_for_url(re.compile(r".*/console/accounts\?email="))
    await expect(page.locator("table tbody tr")).to_have_count(1)
    await expect(page.locator("table tbody tr")).to_contain_text(account["id"])

    # The statement has both lines, newest first, and the balance moved by exactly that.
    await page.goto(f"{server.url}/console/balances/{balance}")
    await expect(page.get_by_test_id("amount")).to_have_text("17.50")
    lines = statement.locator("tbody tr")
    await expect(lines).to_have_count(2)
    await expect(lines.nth(0)).to_contain_text(payment_id)
    await expect(lines.nth(0)).to_contain_text("-7.50")
    await expect(lines.nth(1)).to_contain_text(deposit_id)

    # Both are in the live activity feed of the dashboard.
    await page.click("nav >> text=Dashboard")
    feed = page.locator("table.feed")
    for some_id in (deposit_id, payment_id):
        await expect(feed.locator("tr", has_text=some_id)).to_contain_text("payment.succeeded")
    # ... and a payment made elsewhere appears while the page is open (Server-Sent Events).
    live = await api.pay(payee, balance, "1.25")
    assert live.status == 201 and live.body["status"] == "success", live
    await expect(feed.locator("tr", has_text=live.body["id"])).to_contain_text("1.25 USD")
    await expect(page.locator(".chart canvas").first).to_be_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)

    # A hold placed through the balance page, then voided on its own page.
    await page.goto(f"{server.url}/console/balances/{balance}")
    hold_form = page.locator("form", has=page.locator("h3", has_text="Authorize"))
    await hold_form.locator("input[name=balance_to]").fill(payee)
    await hold_form.locator("input[name=amount]").fill("3.00")
    await hold_form.locator("input[name=expires_in_s]").fill("600")
    await hold_form.locator("button").click()
    await page.wait_for_url(re.compile(r".*/console/holds/hold_\w+$"))
    hold_id = page.url.rsplit("/", 1)[1]
    await expect(page.get_by_test_id("hold-status")).to_have_text("held")
    page.once("dialog", lambda dialog: dialog.accept())
    await page.locator("form.danger button").click()
    await expect(page.get_by_test_id("hold-status")).to_have_text("voided")
    assert (await api.get(f"/v1/holds/{hold_id}")).body["status"] == "voided"
    assert (await api.get(f"/v1/balances/{balance}")).body["available"] == "18.75"

    # An API key for the account: its token shown once, then revoked.
    await page.goto(f"{server.url}/console/accounts/{account['id']}")
    key_form = page.locator("form", has=page.locator("h3", has_text="New API key"))
    await key_form.locator("button").click()
    await expect(key_form.locator("p.ok")).to_contain_text("rlk_")
    [key] = (await api.get(f"/v1/accounts/{account['id']}/keys")).body["data"]
    key_row = page.locator("tr", has_text=key["id"])
    await expect(key_row).to_have_count(1)
    page.once("dialog", lambda dialog: dialog.accept())
    await key_row.get_by_role("button", name="Revoke").click()
    await expect(key_row).to_have_count(0)
    assert (await api.get(f"/v1/accounts/{account['id']}/keys")).body["data"] == []

    # Disable the account and enable it again from its page: one button at a time.
    facts = page.locator("dl.facts").first
    await expect(facts).to_contain_text("active")
    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Disable account").click()
    await expect(facts).to_contain_text("disabled")
    assert (await api.get(f"/v1/accounts/{account['id']}")).body["status"] == "disabled"
    await expect(page.get_by_role("button", name="Disable account")).to_be_hidden()
    await page.get_by_role("button", name="Enable account").click()
    await expect(facts).to_contain_text("active")
    assert (await api.get(f"/v1/accounts/{account['id']}")).body["status"] == "active"

    # Signing out ends the session: the console asks for the token again.
    await page.click("header .signout button")
    await page.wait_for_url(f"{server.url}/console/signin")
    await page.goto(f"{server.url}/console/accounts")
    assert "/console/signin" in page.url
    assert page.failures == []


async def test_the_console_fits_a_phone(server: Server, browser: Any) -> None:
    from playwright.async_api import expect

    page = await open_console(browser, server, width=390, height=844)
    for path in ("/console", "/console/accounts", "/console/payments", "/console/currencies"):
        await page.goto(server.url + path)
        await expect(page.locator("h1")).to_be_visible()
        # Wide tables scroll inside their cards; the page itself never scrolls sideways.
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} is {overflow}px wider than a phone"
    assert page.failures == []


async def test_webhook_endpoints_in_the_console(server: Server, api: Api, browser: Any) -> None:
    from playwright.async_api import expect

    account = await api.account(unique_email("hooks"))
    balance = (await api.balance(account["id"], "USD"))["id"]
    page = await open_console(browser, server)
    await page.click("nav >> text=Webhooks")
    form = page.locator("form", has=page.locator("h3", has_text="New endpoint"))
    await form.locator("input[name=url]").fill("http://127.0.0.1:9/hooks")  # nobody listens: every try fails
    await form.locator("input[name=events]").fill("payment.succeeded, hold.voided")
    await form.locator("button").click()
    await expect(form.locator("p.ok")).to_contain_text("whsec_")  # the secret, shown once
    endpoint_id = re.search(r"we_\w+", await form.locator("p.ok").inner_text()).group(0)  # type: ignore[union-attr]
    row = page.locator("tr", has_text=endpoint_id)
    await expect(row).to_contain_text("hold.voided, payment.succeeded")  # as the ledger keeps them: sorted
    await row.locator("a").click()
    await page.wait_for_url(f"**/console/webhooks/{endpoint_id}")

    await api.deposit(balance, "4.00")
    deliveries = f"/v1/webhook_endpoints/{endpoint_id}/deliveries"

    async def attempted() -> bool:
        return bool((await api.get(deliveries)).body["data"])

    await until(attempted, "a first delivery attempt")
    [first, *_] = (await api.get(deliveries)).body["data"]
    assert not first["delivered"] and first["error"] and first["next_attempt_at"] is not None
    await page.reload()  # the log as it is now: the failed try, and when the next one is due
    row = page.locator("table.deliveries tr", has_text=first["next_attempt_at"])  # that attempt's row
    await expect(row).to_contain_text(first["event_id"])
    await expect(row).to_contain_text("payment.succeeded")

    page.once("dialog", lambda dialog: dialog.accept())
    await page.locator("form.danger button").click()
    await page.wait_for_url(f"{server.url}/console/webhooks")
    assert (await api.get(f"/v1/webhook_endpoints/{endpoint_id}")).status == 404
    await expect(page.locator("tr", has_text=endpoint_id)).to_have_count(0)
    assert page.failures == []


async def test_a_transfer_of_two_legs_through_the_console(server: Server, api: Api, browser: Any) -> None:
    from playwright.async_api import expect

    a, b, c = [(await api.balance((await api.account(unique_email(n)))["id"], "USD"))["id"] for n in "abc"]
    await api.deposit(a, "10.00")
    page = await open_console(browser, server)
    await page.goto(f"{server.url}/console/transfers")
    form = page.locator("form.transfer")
    await form.get_by_role("button", name="Add a leg").click()
    legs = form.locator("fieldset.leg")
    await expect(legs).to_have_count(2)
    for n, (to, amount) in enumerate([(b, "3.00"), (c, "2.50")]):
        await legs.nth(n).locator("input[name=balance_from]").fill(a)
        await legs.nth(n).locator("input[name=balance_to]").fill(to)
        await legs.nth(n).locator("input[name=amount]").fill(amount)
    await form.locator("input[name=description]").fill("split")
    await form.get_by_role("button", name="Transfer").click()
    await page.wait_for_url(re.compile(r".*/console/transfers/tr_\w+$"))
    transfer_id = page.url.rsplit("/", 1)[1]
    await expect(page.locator("dl.facts")).to_contain_text("success")
    await expect(page.locator("table tbody tr")).to_have_count(2)
    made = (await api.get(f"/v1/transfers/{transfer_id}")).body
    assert made["status"] == "success" and made["description"] == "split"
    assert [(leg["balance_to"], leg["amount"]) for leg in made["legs"]] == [(b, "3.00"), (c, "2.50")]
    assert (await api.get(f"/v1/balances/{a}")).body["amount"] == "4.50"

    # A refused request shows the API's words, and the form stays as it was.
    await page.goto(f"{server.url}/console/transfers")
    leg = form.locator("fieldset.leg").first
    await leg.locator("input[name=balance_from]").fill(a)
    await leg.locator("input[name=balance_to]").fill(b)
    await leg.locator("input[name=amount]").fill("1.234")
    await form.get_by_role("button", name="Transfer").click()
    await expect(form.locator("p.error")).to_contain_text("amount")
    assert page.url.endswith("/console/transfers")
    await expect(leg.locator("input[name=amount]")).to_have_value("1.234")
    assert (await api.get(f"/v1/balances/{a}")).body["amount"] == "4.50"
    assert page.failures == []
