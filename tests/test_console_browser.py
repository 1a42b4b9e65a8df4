"""The console in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

The browser is the system one (``make chromium`` installs it): never a downloaded build. A test
that fails saves a screenshot under ``build/browser-failures/``. With
``EVENTROUTER_SCREENSHOTS=1`` the events page is saved as docs/console.png for the README.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.console_harness import PASSWORDS, Console, console_document, start_console

playwright = pytest.importorskip("playwright.async_api")

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parent.parent
FAILURES = ROOT / "build" / "browser-failures"

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="needs Debian's chromium (make chromium installs it)"
)


@pytest.fixture
async def console(make_router) -> AsyncIterator[Console]:
    console = await start_console(make_router, console_document())
    yield console
    await console.client.close()


@pytest.fixture
async def page(request) -> AsyncIterator[object]:
    async with playwright.async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS, timeout=30_000)
        page = await browser.new_page(viewport={"width": 1200, "height": 800})
        page.set_default_timeout(10_000)
        failures_before = request.session.testsfailed
        yield page
        # the test's own report is counted before its fixtures are torn down
        if request.session.testsfailed > failures_before:
            FAILURES.mkdir(parents=True, exist_ok=True)
            shot = FAILURES / f"{request.node.name}.png"
            await page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot of the failure: {shot}")
        await browser.close()


def url(console: Console, path: str = "/") -> str:
    return str(console.client.make_url(path))


async def log_in(page, console: Console, name: str = "alice") -> None:
    await page.goto(url(console, "/events"))
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", PASSWORDS[name])
    await page.click("button[type=submit]")
    await page.wait_for_url("**/events")


async def test_login_and_refusal(page, console: Console):
    await page.goto(url(console, "/events"))
    assert "/login" in page.url
    await page.fill("input[name=name]", "alice")
    await page.fill("input[name=password]", "not her password")
    await page.click("button[type=submit]")
    assert await page.inner_text("#problem") == "Wrong name or password."
    await page.fill("input[name=name]", "alice")
    await page.fill("input[name=password]", PASSWORDS["alice"])
    await page.click("button[type=submit]")
    await page.wait_for_url("**/events")
    assert await page.inner_text("h1") == "Events"
    assert "alice (operator)" in await page.inner_text("header")


async def test_filtering_the_events_list(page, console: Console):
    await console.ingest("invoice.paid", id=1)
    order = await console.ingest("order.created", id=2)
    await log_in(page, console)
    assert await page.locator("#events tbody tr").count() == 2
    await page.fill("input[name=type]", "order.*")
    await page.click("#filters button[type=submit]")
    await page.wait_for_url("**/events?*type=order*")
    rows = page.locator("#events tbody tr")
    assert await rows.count() == 1
    assert "order.created" in await rows.first.inner_text()
    await rows.first.locator("a").click()
    await page.wait_for_url(f"**/events/{order}")


async def test_an_event_its_deliveries_and_a_replay(page, console: Console):
    paid = await console.ingest("invoice.paid", id=1, amount=1200)
    await console.settled(paid)
    await log_in(page, console)
    await page.click(f"a[href='/events/{paid}']")
    await page.wait_for_url(f"**/events/{paid}")
    assert await page.inner_text("#delivery-good h3") == "good: done, 1 attempt"
    cells = await page.locator("#delivery-good tbody tr").first.locator("td").all_inner_texts()
    assert (cells[0], cells[3], cells[4]) == ("1", "done", "first")
    assert '"amount": 1200' in await page.inner_text("#raw")
    await page.select_option("#replay select[name=sink]", "good")
    await page.click("#replay button[type=submit]")
    await page.wait_for_url(f"**/events/{paid}?replayed=good")
    assert "Queued for delivery again to good" in await page.inner_text("#replayed")
    await console.router.recorder.wait_for("good", 2)
    await console.settled(paid)
    await page.goto(url(console, f"/events/{paid}"))
    rows = page.locator("#delivery-good tbody tr")
    assert await rows.count() == 2
    # the replay was made here: its attempt is recorded as the console's
    assert (await rows.nth(1).locator("td").all_inner_texts())[4] == "console"


async def test_retry_all_dead_letters_of_a_sink_after_reading_the_plan(page, console: Console):
    for n in range(2):
        await console.settled(await console.ingest("order.created", id=n))
    await log_in(page, console)
    await page.goto(url(console, "/dead-letters"))
    assert "flaky: 2 ×" in await page.inner_text("main")
    await page.click("#retry-flaky")
    assert "2 dead letters will be queued" in await page.inner_text("#plan")
    assert (await console.get_json("/api/dead-letters"))[1]["total"] == 2, "the plan did nothing"
    await page.click("#confirm")
    await page.wait_for_url("**/dead-letters/progress?*")
    assert "2 dead letters queued for delivery again" in await page.inner_text("#result")
    # the page follows their delivery (it refreshes itself); the flaky sink fails them again
    await page.locator("#progress-status", has_text="Nothing left to deliver").wait_for()
    cells = await page.locator("#progress tbody tr").first.locator("td").all_inner_texts()
    assert cells == ["flaky", "0", "0", "2"]


async def test_live_tail_shows_a_new_webhook_without_a_reload(page, console: Console):
    await console.ingest("invoice.paid", id=1)
    await log_in(page, console)
    await page.wait_for_selector("#tail-status[data-live=yes]")
    marker = await page.evaluate("document.title")  # the page is never reloaded: same document
    fresh = await console.ingest("invoice.refunded", id=2)
    row = page.locator(f"#events tbody tr.fresh a[href='/events/{fresh}']")
    await row.wait_for(timeout=10_000)
    assert await page.locator("#events tbody tr").count() == 2
    assert await page.evaluate("document.title") == marker
    if os.environ.get("EVENTROUTER_SCREENSHOTS"):
        await page.screenshot(path=str(ROOT / "docs" / "console.png"))


async def test_an_action_without_its_csrf_token_is_refused(page, console: Console):
    paid = await console.ingest("invoice.paid", id=1)
    await log_in(page, console)
    await page.goto(url(console, f"/events/{paid}"))
    await page.locator("#replay input[name=csrf_token]").evaluate("input => input.remove()")
    await page.click("#replay button[type=submit]")
    assert "CSRF token is missing" in await page.inner_text("#problem")
    await console.settled(paid)
    _, detail = await console.get_json(f"/api/events/{paid}")
    assert [(d["state"], d["attempts"]) for d in detail["deliveries"]] == [("done", 1)]


async def test_a_viewer_sees_no_actions(page, console: Console):
    paid = await console.ingest("invoice.paid", id=1)
    await log_in(page, console, "bob")
    await page.goto(url(console, f"/events/{paid}"))
    assert await page.locator("#replay").count() == 0
    assert "bob (viewer)" in await page.inner_text("header")


async def test_a_contacts_timeline_across_calls(page, console: Console):
    first = await console.call_ended("cll_1", "55 1234 5678")
    await console.call_ended("cll_2", "+52 55 8765 4321")
    second = await console.call_ended("cll_3", "+525512345678")
    await log_in(page, console)
    await page.click(f"#events a[href='/events/{first}']")
    await page.wait_for_url(f"**/events/{first}")
    await page.goto(url(console, "/timeline"))
    await page.fill("input[name=contact]", "+52 (55) 1234-5678")
    await page.click("#timeline-form button[type=submit]")
    await page.wait_for_url("**/timeline?contact=*")
    assert "Timeline of +52 (55) 1234-5678" in await page.inner_text("h1")
    links = await page.locator("#events tbody a[href^='/events/']").evaluate_all(
        "links => links.map(a => a.getAttribute('href'))"
    )
    assert links == [f"/events/{second}", f"/events/{first}"]
