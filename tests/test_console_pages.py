"""The console's HTML pages: each renders for a token or a session, escapes what senders wrote,
never shows a secret or a sensitive field, and works without credentials on loopback."""

from __future__ import annotations

import re

import pytest

from eventrouter import hookimpl
from tests.console_harness import PASSWORDS, Console, console_document, start_console

PAGES = (
    "/",
    "/timeline",
    "/dead-letters/progress?sink=flaky&queued=2",
    "/timeline?contact=%2B525512345678",
    "/timeline?campaign=77",
    "/events?state=dead&sink=flaky",
    "/events",
    "/events?type=order.*",
    "/dead-letters",
    "/dead-letters?sink=flaky",
    "/config",
)


@pytest.fixture
async def console(make_router):
    console = await start_console(make_router, console_document())
    yield console
    await console.client.close()


async def _page(console: Console, path: str, **kwargs) -> tuple[int, str]:
    async with console.client.get(path, headers=console.bearer(), **kwargs) as response:
        return response.status, await response.text()


async def test_every_page_renders(console: Console):
    paid = await console.ingest("invoice.paid", id=1)
    await console.settled(await console.ingest("order.created", id=2))
    for path in (*PAGES, f"/events/{paid}"):
        status, page = await _page(console, path)
        assert status == 200, (path, page)
        assert "<h1>" in page
    _, page = await _page(console, "/dead-letters")
    assert "flaky: 1 ×" in page
    assert 'id="retry-flaky"' in page


async def test_unknown_event_and_bad_filter_are_pages_saying_so(console: Console):
    status, page = await _page(console, "/events/evt_nope")
    assert status == 404
    assert "no event evt_nope in the store" in page
    status, page = await _page(console, "/events?limit=abc")
    assert status == 400
    assert "limit: must be a whole number" in page
    status, page = await _page(console, "/timeline?contact=nobody")
    assert status == 400
    assert "contact: &#39;nobody&#39; is neither an email nor a phone number" in page


async def test_pages_of_events_link_to_older_ones(console: Console):
    ids = [await console.ingest("invoice.paid", id=n) for n in range(3)]
    _, page = await _page(console, "/events?limit=2&type=invoice.*")
    assert ids[2] in page
    assert ids[0] not in page
    older = re.search(r'href="\?([^"]+)" id="older"', page).group(1).replace("&amp;", "&")
    assert "type=invoice.%2A" in older
    _, page = await _page(console, f"/events?{older}")
    assert ids[0] in page
    assert ids[2] not in page
    assert 'id="older"' not in page


async def test_an_event_page_shows_each_attempt(console: Console):
    order = await console.ingest("order.created", id=1)
    await console.settled(order)
    _, page = await _page(console, f"/events/{order}")
    row = page.split('<section class="delivery" id="delivery-flaky">')[1].split("</section>")[0]
    assert 'flaky: <span class="state dead">dead</span>, 1 attempt' in row
    assert "recording sink refused attempt 1" in row
    assert "<td>first</td>" in row


async def test_what_a_sender_wrote_is_escaped(console: Console):
    hostile = "<script>alert(1)</script>"
    event_id = await console.ingest(
        "invoice.paid", note=hostile, img='"><img src=x onerror=alert(1)>'
    )
    for path in ("/events", f"/events/{event_id}"):
        _, page = await _page(console, path)
        assert "<script>alert" not in page
        assert "<img src=x" not in page
    _, page = await _page(console, f"/events/{event_id}")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


async def test_sensitive_fields_are_shown_redacted(make_router, register_plugin):
    class MarkSensitive:
        @hookimpl
        def event_normalised(self, event):
            return event.evolve(sensitive=("data.token",))

    register_plugin(MarkSensitive())
    document = console_document()
    document["sinks"]["good"]["delivery"]["include_sensitive"] = True  # so the store keeps it
    console = await start_console(make_router, document)
    try:
        event_id = await console.ingest("invoice.paid", token="magic-link-token-98765")
        stored = await console.router.store.get_event(event_id)
        assert stored.event.raw["data"]["token"] == "magic-link-token-98765"
        _, page = await _page(console, f"/events/{event_id}")
        _, body = await console.get_json(f"/api/events/{event_id}")
        assert "magic-link-token-98765" not in page
        assert body["raw"]["data"]["token"] == "[redacted]"
        assert body["sensitive"] == ["data.token"]
    finally:
        await console.client.close()


async def test_without_credentials_on_loopback_everyone_is_the_local_operator(make_router):
    document = console_document()
    document["console"] = {}
    console = await start_console(make_router, document)
    try:
        event_id = await console.ingest("invoice.paid", id=1)
        async with console.client.get(f"/events/{event_id}") as response:
            assert response.status == 200
            page = await response.text()
        assert "local (operator)" in page
        assert "Log out" not in page
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        async with console.client.post(
            f"/events/{event_id}/replay", data={"csrf_token": token}, allow_redirects=False
        ) as response:
            assert response.status == 303
        async with console.client.post(
            f"/events/{event_id}/replay", data={}, allow_redirects=False
        ) as response:
            assert response.status == 403
        async with console.client.get("/login", allow_redirects=False) as response:
            assert response.status == 303
    finally:
        await console.client.close()


async def _session_token(console: Console, name: str, page: str) -> str:
    """Log in as ``name`` and return the CSRF token ``page`` carries."""
    async with console.client.post(
        "/login", data={"name": name, "password": PASSWORDS[name]}, allow_redirects=False
    ) as response:
        assert response.status == 303
    async with console.client.get(page) as response:
        text = await response.text()
    return re.search(r'name="csrf_token" value="([^"]+)"', text).group(1)


async def test_logging_out_ends_the_session(console: Console):
    token = await _session_token(console, "bob", "/")
    async with console.client.post(
        "/logout", data={"csrf_token": token}, allow_redirects=False
    ) as response:
        assert response.headers["Location"] == "/login"
    async with console.client.get("/api/events") as response:
        assert response.status == 401


async def test_a_viewer_cannot_retry_from_the_page(console: Console):
    token = await _session_token(console, "bob", "/dead-letters")
    async with console.client.post(
        "/dead-letters/retry", data={"csrf_token": token, "confirm": "yes"}
    ) as response:
        assert response.status == 403
        assert "bob is a viewer" in await response.text()
