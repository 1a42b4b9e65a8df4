"""The console's JSON API: every endpoint, filter, role and refusal."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from eventrouter.console.traffic import Traffic
from eventrouter.metrics import Metrics
from tests.console_harness import (
    ALTUR_SECRET,
    OPERATOR_TOKEN,
    VIEWER_TOKEN,
    WHSEC,
    Console,
    console_document,
    start_console,
)


@pytest.fixture
async def console(make_router):
    console = await start_console(make_router, console_document())
    yield console
    await console.client.close()


async def test_events_list_filters_and_detail(console: Console):
    paid = await console.ingest("invoice.paid", id=1, amount=1200)
    order = await console.ingest("order.created", id=2)
    status, body = await console.get_json("/api/events")
    assert status == 200
    assert [e["id"] for e in body["events"]] == [order, paid]
    status, body = await console.get_json("/api/events", type="invoice.*")
    assert [e["id"] for e in body["events"]] == [paid]
    assert body["filters"] == {"type": "invoice.*"}
    status, body = await console.get_json("/api/events", source="nope")
    assert body["events"] == []
    await console.settled(paid)
    status, body = await console.get_json(f"/api/events/{paid}")
    assert status == 200
    assert body["raw"]["data"] == {"id": 1, "amount": 1200}
    assert [(d["sink"], d["state"], d["attempts"]) for d in body["deliveries"]] == [
        ("good", "done", 1)
    ]


async def test_every_query_layer_filter_and_cursor_pages(console: Console):
    before = datetime.now(UTC)
    call = await console.call_ended("cll_1", "55 1234 5678")
    other = await console.call_ended("cll_2", "+52 55 8765 4321")
    campaign = await console.campaign_event("evt_c1", 77)
    order = await console.ingest("order.created", id=2, note="needle-in-payload")
    await console.settled(order)

    async def ids(**params: str) -> list[str]:
        status, body = await console.get_json("/api/events", **params)
        assert status == 200, body
        return [e["id"] for e in body["events"]]

    assert await ids() == [order, campaign, other, call]
    assert await ids(source="altur") == [campaign, other, call]
    assert await ids(type="call.*") == [other, call]
    assert await ids(state="dead") == [order]
    assert await ids(sink="flaky") == [order]
    assert await ids(contact="+525512345678") == [call]
    assert await ids(contact="+52 (55) 1234-5678") == [call], "any format, matched as E.164"
    assert await ids(call_id="cll_2") == [other]
    assert await ids(campaign_id="77") == [campaign]
    assert await ids(text="needle-in-payload") == [order]
    assert await ids(since=before.isoformat(), until=datetime.now(UTC).isoformat()) == [
        order,
        campaign,
        other,
        call,
    ]
    assert await ids(until=before.isoformat()) == []
    assert await ids(since=before.replace(tzinfo=None).isoformat()) != [], "no zone: UTC"

    seen, cursor = [], None
    for _ in range(5):
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        _, body = await console.get_json("/api/events", **params)
        seen += [e["id"] for e in body["events"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [order, campaign, other, call]


async def test_bad_filters_name_the_parameter(console: Console):
    for params, parameter in (
        ({"state": "lost"}, "state"),
        ({"contact": "not a contact"}, "contact"),
        ({"since": "yesterday"}, "since"),
        ({"cursor": "garbage"}, "cursor"),
        ({"limit": "5000"}, "limit"),
        ({"since": "2026-01-02T00:00:00+00:00", "until": "2026-01-01T00:00:00+00:00"}, "since"),
    ):
        status, body = await console.get_json("/api/events", **params)
        assert (status, body["error"], body["parameter"]) == (400, "invalid_parameter", parameter)


async def test_timeline_of_a_contact_and_of_a_campaign(console: Console):
    first = await console.call_ended("cll_1", "55 1234 5678")
    await console.call_ended("cll_2", "+52 55 8765 4321")
    second = await console.call_ended("cll_3", "+525512345678")
    campaign = await console.campaign_event("evt_c1", 77)
    status, body = await console.get_json("/api/timeline", contact="5512345678")
    assert status == 400, "a phone needs its country code"
    assert body["parameter"] == "contact"
    status, body = await console.get_json("/api/timeline", contact="+52 55 1234 5678")
    assert status == 200
    assert [e["id"] for e in body["events"]] == [second, first]
    assert body["filters"] == {"contact": "+52 55 1234 5678"}
    _, body = await console.get_json("/api/timeline", campaign="77")
    assert [e["id"] for e in body["events"]] == [campaign]
    status, body = await console.get_json("/api/timeline")
    assert status == 400
    status, body = await console.get_json("/api/timeline", contact="+525512345678", campaign="77")
    assert status == 400


async def test_event_detail_lists_every_attempt(console: Console):
    order = await console.ingest("order.created", id=1)
    await console.settled(order)
    _, body = await console.get_json(f"/api/events/{order}")
    [delivery] = body["deliveries"]
    assert (delivery["sink"], delivery["state"], delivery["attempts"]) == ("flaky", "dead", 1)
    [attempt] = delivery["history"]
    assert attempt["number"] == 1
    assert attempt["outcome"] == "dead"
    assert attempt["trigger"] == "first"
    assert attempt["error"] == "recording sink refused attempt 1"
    assert attempt["duration"] >= 0


async def test_bad_parameters_and_unknown_ids_are_json_4xx(console: Console):
    status, body = await console.get_json("/api/events", limit="0")
    assert (status, body["error"], body["parameter"]) == (400, "invalid_parameter", "limit")
    status, body = await console.get_json("/api/events", colour="red")
    assert (status, body["parameter"]) == (400, "colour")
    status, body = await console.get_json("/api/events/evt_missing")
    assert (status, body["error"]) == (404, "not_found")
    status, body = await console.get_json("/api/nothing-here")
    assert (status, body["error"]) == (404, "not_found")
    status, body = await console.post_json("/api/events/evt_missing/replay")
    assert status == 404
    async with console.client.post(
        "/api/dead-letters/retry", data="{not json", headers=console.bearer()
    ) as response:
        assert response.status == 400
        assert (await response.json())["parameter"] == "body"


async def test_replay_queues_the_event_again_for_its_sinks_or_one(console: Console):
    paid = await console.ingest("invoice.paid", id=1)
    await console.settled(paid)
    status, body = await console.post_json(f"/api/events/{paid}/replay")
    assert (status, body) == (200, {"event_id": paid, "sinks": ["good"], "queued": 1})
    status, body = await console.post_json(f"/api/events/{paid}/replay", {"sinks": ["flaky"]})
    assert (status, body["sinks"]) == (200, ["flaky"])
    await console.settled(paid)
    status, body = await console.get_json(f"/api/events/{paid}")
    [good] = [d for d in body["deliveries"] if d["sink"] == "good"]
    # the first delivery, then the replay made here: recorded as the console's
    assert [a["trigger"] for a in good["history"]] == ["first", "console"]
    status, body = await console.post_json(f"/api/events/{paid}/replay", {"sinks": ["gone"]})
    assert (status, body["parameter"]) == (400, "sink")
    status, body = await console.post_json(f"/api/events/{paid}/replay", {"sinks": "good"})
    assert (status, body["parameter"]) == (400, "sinks")


async def test_dead_letters_grouped_then_retry_plan_then_run(console: Console):
    orders = [await console.ingest("order.created", id=n) for n in range(3)]
    for event_id in orders:
        await console.settled(event_id)
    status, body = await console.get_json("/api/dead-letters")
    assert status == 200
    [group] = body["groups"]
    assert (group["sink"], group["count"]) == ("flaky", 3)
    assert group["reason"] == "recording sink refused attempt #"
    status, body = await console.post_json("/api/dead-letters/retry", {"sink": "flaky"})
    assert (status, body) == (200, {"plan": {"by_sink": {"flaky": 3}, "total": 3}})
    status, body = await console.get_json("/api/dead-letters")
    assert body["total"] == 3, "a plan changes nothing"
    status, body = await console.post_json(
        "/api/dead-letters/retry", {"sink": "flaky", "confirm": True}
    )
    assert (status, body["retried"]["by_sink"], body["retried"]["total"]) == (200, {"flaky": 3}, 3)
    # the action is the operator's: its attempts are recorded with the trigger "console"
    assert body["retried"]["actions"]["flaky"].startswith("console:token-1:dlq_retry-")
    status, body = await console.post_json("/api/dead-letters/retry", {"sink": "flaky"})
    assert body["plan"]["total"] == 0, "all of them retried"
    status, body = await console.post_json("/api/dead-letters/retry", {"sink": "nope"})
    assert (status, body["parameter"]) == (400, "sink")
    status, body = await console.post_json("/api/dead-letters/retry", {"confirm": "yes"})
    assert (status, body["parameter"]) == (400, "confirm")
    for bad, parameter in (
        ({"filter": {"colour": "red"}}, "colour"),
        ({"filter": {"sink": "flaky"}}, "filter"),
        ({"filter": {"state": "pending"}}, "state"),
        ({"filter": ["source"]}, "filter"),
        ({"filter": {"contact": "nobody"}}, "contact"),
    ):
        status, body = await console.post_json("/api/dead-letters/retry", bad)
        assert (status, body["parameter"]) == (400, parameter), bad


async def test_retry_of_the_dead_letters_matching_a_filter(console: Console):
    first = await console.ingest("order.created", id=1, region="north")
    second = await console.ingest("order.created", id=2, region="south")
    await console.settled(first)
    await console.settled(second)
    body = {"sink": "flaky", "filter": {"text": "south"}}
    status, answer = await console.post_json("/api/dead-letters/retry", body)
    assert (status, answer["plan"]["total"]) == (200, 1)
    status, answer = await console.post_json("/api/dead-letters/retry", {**body, "confirm": True})
    assert answer["retried"]["total"] == 1
    await console.settled(second)
    _, detail = await console.get_json(f"/api/events/{second}")
    assert [a["trigger"] for a in detail["deliveries"][0]["history"]] == ["first", "console"]
    _, detail = await console.get_json(f"/api/events/{first}")
    assert [a["trigger"] for a in detail["deliveries"][0]["history"]] == ["first"]


async def test_sources_sinks_and_routes_never_show_a_secret(console: Console):
    _, body = await console.get_json("/api/sources")
    assert body["sources"][0] == {
        "name": "demo",
        "type": "standard-webhooks",
        "path": "/hooks/demo",
        "url": "http://127.0.0.1:8080/hooks/demo",
    }
    assert [s["name"] for s in body["sources"]] == ["demo", "altur"]
    _, body = await console.get_json("/api/sinks")
    assert [s["name"] for s in body["sinks"]] == ["good", "flaky"]
    assert body["sinks"][0]["max_attempts"] == 1
    _, body = await console.get_json("/api/routes")
    assert body["routes"][0] == {
        "sources": ["*"],
        "types": ["invoice.*"],
        "filter": None,
        "sinks": ["good"],
    }
    for path in ("/api/sources", "/api/sinks", "/api/routes", "/api/overview", "/config"):
        async with console.client.get(path, headers=console.bearer()) as response:
            text = await response.text()
            assert response.status == 200
            for secret in (
                WHSEC.removeprefix("whsec_"),
                ALTUR_SECRET,
                OPERATOR_TOKEN,
                VIEWER_TOKEN,
                "scrypt$",
            ):
                assert secret not in text, (path, secret)


async def test_overview_counts_queues_requests_and_attempts(console: Console):
    paid = await console.ingest("invoice.paid", id=1)
    order = await console.ingest("order.created", id=2)
    await console.router.post("demo", {"type": "x"}, signed=False)
    await console.settled(paid)
    await console.settled(order)
    status, body = await console.get_json("/api/overview")
    assert status == 200
    good, flaky = body["sinks"]
    assert (good["name"], good["pending"], good["dead"], good["success_rate"]) == (
        "good",
        0,
        0,
        1.0,
    )
    assert good["p95_seconds"] > 0
    assert good["last_error"] is None
    assert (flaky["dead"], flaky["success_rate"]) == (1, 0.0)
    assert flaky["last_error"] == "recording sink refused attempt 1"
    demo = body["sources"][0]
    assert demo["last_hour"] == {"accepted": 2, "unauthorized": 1}
    assert demo["last_day"] == demo["last_hour"]
    assert body["requests_counted"] is True
    assert body["store"]["backend"] == "sqlite"
    assert body["store"]["last_worker_heartbeat"] is not None, "the router delivers"
    assert sum(body["accepted_per_minute"]) == 2
    assert len(body["accepted_per_minute"]) == 60


def test_traffic_windows_subtract_the_sample_taken_then():
    metrics = Metrics()
    traffic = Traffic(metrics)
    traffic.sample(now=0.0)
    metrics.requests.labels("demo", "accepted").inc(5)
    traffic.sample(now=60.0)
    metrics.requests.labels("demo", "accepted").inc(2)
    metrics.requests.labels("demo", "invalid").inc()
    traffic.sample(now=120.0)
    metrics.requests.labels("demo", "accepted").inc(1)
    # from the newest sample taken before the window starts
    assert traffic.window(10, now=130.0) == {"demo": {"accepted": 1}}
    assert traffic.window(30, now=130.0) == {"demo": {"accepted": 3, "invalid": 1}}
    assert traffic.window(3600, now=130.0) == {"demo": {"accepted": 8, "invalid": 1}}
    assert traffic.per_minute(3, now=150.0) == [0, 5, 3]


async def test_nobody_gets_401_and_a_wrong_token_too(console: Console):
    async with console.client.get("/api/events") as response:
        assert response.status == 401
        assert (await response.json())["error"] == "unauthorized"
    status, _ = await console.get_json("/api/events", token="wrong-token-0123456789")
    assert status == 401
    async with console.client.get("/events", allow_redirects=False) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/login?next=/events"


async def test_a_viewer_reads_but_may_not_act(console: Console):
    paid = await console.ingest("invoice.paid", id=1)
    status, _ = await console.get_json(f"/api/events/{paid}", token=VIEWER_TOKEN)
    assert status == 200
    status, body = await console.post_json(f"/api/events/{paid}/replay", token=VIEWER_TOKEN)
    assert (status, body["error"]) == (403, "forbidden")
    status, body = await console.post_json(
        "/api/dead-letters/retry", {"confirm": True}, token=VIEWER_TOKEN
    )
    assert status == 403


async def _login(console: Console, name: str, password: str) -> int:
    async with console.client.post(
        "/login",
        data={"name": name, "password": password, "next": "/events"},
        allow_redirects=False,
    ) as response:
        return response.status


async def test_login_sets_a_strict_httponly_cookie_and_refuses_a_wrong_password(console: Console):
    assert await _login(console, "alice", "wrong") == 401
    assert await _login(console, "nobody", "alice-password") == 401
    async with console.client.post(
        "/login",
        data={"name": "alice", "password": "alice-password", "next": "//evil.example/"},
        allow_redirects=False,
    ) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/"
        cookie = response.headers["Set-Cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert "Secure" not in cookie
    async with console.client.get("/api/events") as response:
        assert response.status == 200


async def test_actions_with_a_session_need_the_csrf_token(console: Console):
    paid = await console.ingest("invoice.paid", id=1)
    assert await _login(console, "alice", "alice-password") == 303
    status, body = await console.post_json(f"/api/events/{paid}/replay", token=None)
    assert (status, body["error"]) == (403, "csrf")
    async with console.client.post(
        f"/events/{paid}/replay", data={"sink": "good"}, allow_redirects=False
    ) as response:
        assert response.status == 403
    async with console.client.get(f"/events/{paid}") as response:
        page = await response.text()
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    status, body = await console.post_json(
        f"/api/events/{paid}/replay", token=None, headers={"X-CSRF-Token": token}
    )
    assert (status, body["queued"]) == (200, 1)
    async with console.client.post(
        f"/events/{paid}/replay", data={"sink": "good", "csrf_token": token}, allow_redirects=False
    ) as response:
        assert response.status == 303
        assert response.headers["Location"] == f"/events/{paid}?replayed=good"


async def test_every_answer_has_a_strict_content_security_policy(console: Console):
    async with console.client.get("/login") as response:
        csp = response.headers["Content-Security-Policy"]
        page = await response.text()
    assert "script-src 'self'" in csp
    assert "'unsafe-inline'" not in csp
    assert "<script>" not in page, "no inline script"
    async with console.client.get("/api/events", headers=console.bearer()) as response:
        assert "Content-Security-Policy" in response.headers


async def test_actions_are_logged_with_who_did_them(console: Console, caplog):
    paid = await console.ingest("invoice.paid", id=1)
    caplog.set_level("INFO", logger="eventrouter.console")
    await console.post_json(f"/api/events/{paid}/replay")
    assert f"console:token-1 replayed event {paid} to good" in caplog.text


def test_every_endpoint_is_documented_in_docs_api_md():
    from pathlib import Path

    from aiohttp import web

    from eventrouter.console import api

    router = web.UrlDispatcher()
    api.add_routes(router)
    docs = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()
    endpoints = [
        f"{route.method} {route.resource.canonical}"
        for route in router.routes()
        if route.method not in ("*", "HEAD") and route.resource is not None
    ]
    assert len(endpoints) == 10
    for endpoint in endpoints:
        assert endpoint in docs, f"docs/api.md has no {endpoint}"


async def test_the_live_tail_streams_new_events_matching_the_list_filters(console: Console):
    await console.ingest("order.created", id=0)
    async with console.client.get(
        "/events/stream", params={"type": "invoice.*"}, headers=console.bearer()
    ) as stream:
        assert stream.headers["Content-Type"] == "text/event-stream"
        assert await stream.content.readline() == b": tail started\n"
        await console.ingest("order.created", id=1)
        paid = await console.ingest("invoice.paid", id=2)
        async with asyncio.timeout(10):
            line = b""
            while not line.startswith(b"data:"):
                line = await stream.content.readline()
        shown = json.loads(line.removeprefix(b"data: "))
        assert (shown["id"], shown["type"]) == (paid, "invoice.paid")
    async with console.client.get(
        "/events/stream", params={"state": "lost"}, headers=console.bearer()
    ) as refused:
        assert refused.status == 400
