"""Ingest through a real server: every answer is the right status with a JSON body."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path

from eventrouter import hookimpl
from eventrouter.config import parse_config
from eventrouter.errors import Overloaded, StoreUnavailable
from eventrouter.events import Contact, Event, EventData
from eventrouter.ingest import Ingest, Outcome
from eventrouter.plugins import Registry, create_plugin_manager
from eventrouter.sources import WebhookRequest
from eventrouter.store import IngestResult
from eventrouter.store.sqlite import SQLiteStore
from eventrouter.testing import sign_request
from tests.processes import WHSEC

EVENT = {
    "type": "invoice.paid",
    "timestamp": "2026-06-08T18:00:00-06:00",
    "data": {"id": 1, "amount": 1200},
}


async def test_accepted_event_is_stored_routed_and_delivered(make_router, basic_config):
    router = await make_router(basic_config)
    status, body = await router.post("demo", EVENT)
    assert status == 200
    assert body == {"status": "accepted", "event_id": body["event_id"], "sinks": ["recorder"]}
    [event] = await router.recorder.wait_for("recorder", 1)
    assert event.id == body["event_id"]
    assert (event.source, event.type, event.provider, event.provider_type) == (
        "demo",
        "invoice.paid",
        "standard-webhooks",
        "invoice.paid",
    )
    assert event.time.isoformat() == "2026-06-08T18:00:00-06:00"
    assert event.data.attributes == {"id": 1, "amount": 1200}
    assert event.raw == EVENT
    stored = await router.store.get_event(event.id)
    assert stored.event == event
    for _ in range(250):  # 5 s: the outcome is written after the sink has the event
        stored = await router.store.get_event(event.id)
        if stored.deliveries[0].state == "done":
            break
        await asyncio.sleep(0.02)
    assert [(d.sink, d.state, d.attempts) for d in stored.deliveries] == [("recorder", "done", 1)]


async def test_bad_missing_and_forged_signatures_get_401(make_router, basic_config):
    router = await make_router(basic_config)
    status, body = await router.post("demo", EVENT, signed=False)
    assert status == 401
    assert body["error"] == "unauthorized"
    assert "webhook-id" in body["message"]

    signed_body = json.dumps(EVENT).encode()
    from eventrouter.testing import sign_request

    _, signature = sign_request(router.config.sources["demo"], signed_body)
    forged = json.dumps({**EVENT, "data": {"id": 2}})
    status, body = await router.post("demo", forged, signed=False, headers=signature.headers)
    assert status == 401
    assert body == {
        "error": "unauthorized",
        "message": "standard webhooks: no matching signature found",
    }
    status, body = await router.post(
        "demo", EVENT, headers={"webhook-signature": "v1,bm90IGEgc2lnbmF0dXJl"}
    )
    assert status == 401
    assert router.recorder.events == {}


async def test_old_timestamp_is_refused(make_router, basic_config):
    router = await make_router(basic_config)
    status, body = await router.post("demo", EVENT, headers={"webhook-timestamp": "1000000000"})
    assert status == 401
    assert "too old" in body["message"]


async def test_oversized_body_gets_413(make_router, basic_config):
    router = await make_router({**basic_config, "server": {"max_body_bytes": 200}})
    status, body = await router.post("demo", {"type": "big", "data": {"x": "y" * 500}})
    assert status == 413
    assert body["error"] == "payload_too_large"
    assert "200" in body["message"]


async def test_malformed_json_gets_400_naming_the_problem(make_router, basic_config):
    router = await make_router(basic_config)
    status, body = await router.post("demo", b'{"type": "x",')
    assert status == 400
    assert body["error"] == "invalid_payload"
    assert body["message"].startswith("body is not valid JSON")
    status, body = await router.post("demo", b"[1, 2]")
    assert (status, body["message"]) == (400, "expected a JSON object, got list")
    status, body = await router.post("demo", {"type": 7})
    assert (status, body["field"]) == (400, "type")
    # the spec signs the body as text: a body that is not UTF-8 cannot carry a valid signature
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": "v1,AAAA",
    }
    status, body = await router.post("demo", b"\xff\xfe{}", signed=False, headers=headers)
    assert (status, body["error"]) == (401, "unauthorized")


async def test_unknown_path_and_wrong_method(make_router, basic_config):
    router = await make_router(basic_config)
    async with router.client.post("/hooks/nope", data=b"{}") as response:
        assert response.status == 404
        assert (await response.json())["error"] == "not_found"
    async with router.client.get("/hooks/demo") as response:
        assert response.status == 405
        assert (await response.json())["error"] == "method_not_allowed"
        assert response.headers["Allow"] == "POST"


async def test_duplicate_answers_200_and_is_not_delivered_again(
    make_router, basic_config, recorded
):
    router = await make_router(basic_config)
    from eventrouter.testing import sign_request

    body, signature = sign_request(router.config.sources["demo"], EVENT)
    first = await router.post("demo", body, signed=False, headers=signature.headers)
    second = await router.post("demo", body, signed=False, headers=signature.headers)
    assert first[0] == second[0] == 200
    assert first[1]["status"] == "accepted"
    assert second[1] == {"status": "duplicate", "event_id": first[1]["event_id"]}
    await recorded.wait_for("recorder", 1)
    await asyncio.sleep(0.3)
    assert len(recorded.events["recorder"]) == 1
    assert len(await router.store.list_events()) == 1


async def test_store_failure_answers_503_with_retry_after(make_router, basic_config, monkeypatch):
    router = await make_router(basic_config)

    async def broken(event, sinks):
        raise StoreUnavailable("disk I/O error")

    monkeypatch.setattr(router.store, "ingest", broken)
    async with router.client.post("/hooks/demo", data=b"{}") as response:
        assert response.status == 401  # authentication still comes first
    status, body = await router.post("demo", EVENT)
    assert status == 503
    assert body["error"] == "unavailable"

    async def overloaded(event, sinks):
        raise Overloaded("5000 writes are waiting for the disk")

    monkeypatch.setattr(router.store, "ingest", overloaded)
    from eventrouter.testing import sign_request

    data, signature = sign_request(router.config.sources["demo"], EVENT)
    async with router.client.post(
        "/hooks/demo", data=data, headers={**signature.headers, "Content-Type": "application/json"}
    ) as response:
        assert response.status == 503
        assert response.headers["Retry-After"] == "2"
        assert (await response.json())["error"] == "unavailable"


async def test_closed_store_answers_503_and_readyz_says_so(make_router, basic_config):
    router = await make_router(basic_config)
    async with router.client.get("/readyz") as response:
        assert (response.status, await response.json()) == (200, {"status": "ready"})
    await router.store.close()
    status, body = await router.post("demo", EVENT)
    assert (status, body["error"]) == (503, "unavailable")
    async with router.client.get("/readyz") as response:
        assert response.status == 503
        assert (await response.json())["error"] == "store_unavailable"
    async with router.client.get("/healthz") as response:
        assert response.status == 200


async def test_metrics_count_requests_and_deliveries(make_router, basic_config, recorded):
    router = await make_router(basic_config)
    await router.post("demo", EVENT)
    await router.post("demo", EVENT, signed=False)
    await recorded.wait_for("recorder", 1)
    delivered = 'eventrouter_deliveries_total{outcome="delivered",sink="recorder"} 1.0'
    # counted as the attempt ends, a moment after the sink has the event: polled for, as a
    # fixed 0.1 s sleep assumed an idle machine
    for _ in range(100):
        async with router.client.get("/metrics") as response:
            text = await response.text()
        if delivered in text:
            break
        await asyncio.sleep(0.05)
    assert 'eventrouter_requests_total{outcome="accepted",source="demo"} 1.0' in text
    assert 'eventrouter_requests_total{outcome="unauthorized",source="demo"} 1.0' in text
    assert delivered in text
    assert 'eventrouter_queue_depth{sink="recorder",state="pending"} 0.0' in text
    assert 'eventrouter_ack_seconds_count{source="demo"} 1.0' in text
    assert "eventrouter_delivery_seconds_bucket" in text


async def test_routes_choose_sinks_by_source_type_and_filter(make_router, basic_config, recorded):
    config = {
        **basic_config,
        "sinks": {
            "all": {"plugin": "recording"},
            "big": {"plugin": "recording"},
            "users": {"plugin": "recording"},
        },
        "routes": [
            {"sinks": ["all"]},
            {"types": ["invoice.*"], "filter": "data.attributes.amount > `1000`", "sinks": ["big"]},
            {
                "sources": ["de*"],
                "types": ["user.*"],
                "filter": "data.attributes.amount < `10`",
                "sinks": ["users"],
            },
        ],
    }
    router = await make_router(config)
    _, small = await router.post("demo", {"type": "invoice.paid", "data": {"amount": 5}})
    _, large = await router.post("demo", {"type": "invoice.paid", "data": {"amount": 5000}})
    _, user = await router.post("demo", {"type": "user.created", "data": {"amount": 5000}})
    assert small["sinks"] == ["all"]
    assert large["sinks"] == ["all", "big"]
    assert user["sinks"] == ["all"]
    await recorded.wait_for("all", 3)
    await recorded.wait_for("big", 1)
    assert recorded.events["big"][0].id == large["event_id"]
    assert "users" not in recorded.events


async def test_event_normalised_hook_can_enrich_and_drop(
    make_router, basic_config, recorded, register_plugin
):
    class Enricher:
        @hookimpl
        def event_normalised(self, event):
            if event.type == "test.drop":
                return False
            return event.evolve(subject="enriched")

    seen = []

    class Observer:
        @hookimpl
        async def event_received(self, source, request):
            seen.append((source.name, request.path))

    register_plugin(Enricher())
    register_plugin(Observer())
    router = await make_router(basic_config)
    status, body = await router.post("demo", {"type": "test.drop"})
    assert (status, body) == (200, {"status": "dropped"})
    status, body = await router.post("demo", {"type": "test.keep"})
    assert body["status"] == "accepted"
    [event] = await recorded.wait_for("recorder", 1)
    assert event.subject == "enriched"
    assert seen == [("demo", "/hooks/demo"), ("demo", "/hooks/demo")]
    assert len(await router.store.list_events()) == 1


async def test_a_failing_transform_plugin_answers_503_not_500(
    make_router, basic_config, register_plugin
):
    class Broken:
        @hookimpl
        def event_normalised(self, event):
            raise RuntimeError("bug in a plugin")

    register_plugin(Broken())
    router = await make_router(basic_config)
    status, body = await router.post("demo", EVENT)
    assert status == 503
    assert body["error"] == "internal_error"
    async with router.client.get("/metrics") as response:
        text = await response.text()
    assert 'eventrouter_requests_total{outcome="error",source="demo"} 1.0' in text


async def test_an_event_the_stores_could_not_read_back_is_answered_503_never_stored(
    make_router, basic_config, register_plugin, caplog
):
    # attrs does not check a field's class: a hook that puts a number in a str field makes an
    # event the stores' reader would refuse at every claim. Refused before the store (503, so
    # the provider retries once the hook is fixed), with what is wrong and where in the log.
    class Careless:
        @hookimpl
        def event_normalised(self, event):
            return event.evolve(data=EventData(contact=Contact(phone=919876543210)))

    register_plugin(Careless())
    router = await make_router(basic_config)
    status, body = await router.post("demo", EVENT)
    assert (status, body["error"]) == (503, "parser_failed")
    assert body["retry_after"] == 60
    assert await router.store.list_events() == []
    assert "Expected `str | null`, got `int` - at `$.data.contact.phone`" in caplog.text
    assert "919876543210" not in caplog.text


async def test_a_body_that_does_not_decode_gets_400(make_router, basic_config, caplog):
    """Content-Encoding: gzip (or deflate) on a body that is not compressed is the sender's
    mistake: 400 with a JSON body, never a 5xx that the sender would retry for ever."""
    router = await make_router(basic_config)
    for encoding in ("gzip", "deflate"):
        status, body = await router.post("demo", EVENT, headers={"Content-Encoding": encoding})
        assert status == 400, (encoding, body)
        assert body["error"] == "invalid_payload"
        assert encoding in body["message"] or "decode" in body["message"], body
    assert "Traceback" not in caplog.text
    status, _ = await router.post("demo", EVENT)
    assert status == 200


# -- the ingest pipeline without aiohttp ------------------------------------------------------


class _CountingStore(SQLiteStore):
    """A real SQLite store that remembers which events it was asked to store."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.asked: list[str] = []

    async def ingest(self, event: Event, sinks: Sequence[str]) -> IngestResult:
        self.asked.append(event.id)
        return await super().ingest(event, sinks)


async def test_ingest_is_fed_a_webhook_request_and_returns_an_outcome(tmp_path):
    """No aiohttp in sight; a payload JSON cannot hold is refused before the store is called."""
    pm = create_plugin_manager()
    config = parse_config(
        {"sources": {"demo": {"plugin": "standard-webhooks", "secrets": [WHSEC]}}},
        Registry.collect(pm),
    )
    store = _CountingStore(tmp_path / "events.db")
    await store.open()
    notified: list[list[str]] = []
    ingest = Ingest(
        "demo", config.sources["demo"], config=config, pm=pm, store=store, notify=notified.append
    )
    try:

        def webhook(body: bytes) -> WebhookRequest:
            body, signed = sign_request(config.sources["demo"], body)
            return WebhookRequest(body=body, headers=signed.headers, query=signed.query)

        good = await ingest(webhook(b'{"type": "order.paid", "data": {"n": 1}}'))
        assert good.label == "accepted"
        assert good.status == 200
        assert notified == [[]]
        assert store.asked == [good.body["event_id"]]

        lone = await ingest(webhook(b'{"type": "order.paid", "data": {"name": "\\ud800"}}'))
        assert lone == Outcome(
            "invalid",
            400,
            {
                "error": "invalid_payload",
                "message": "the payload holds a lone UTF-16 surrogate escape, which is not valid"
                " Unicode",
            },
        )
        assert store.asked == [good.body["event_id"]]  # the store never saw it

        forged = await ingest(WebhookRequest(body=b"{}", headers={"webhook-id": "x"}))
        assert forged.label == "unauthorized"
        assert forged.status == 401
    finally:
        await store.close()
