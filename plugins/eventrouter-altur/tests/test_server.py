"""Through a running router: signed Altur webhooks reach a sink, unsigned ones get a JSON 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest

from eventrouter import CampaignStatus, EventType


@pytest.fixture
def config(secret: str) -> dict[str, Any]:
    return {
        "sources": {
            "altur": {"plugin": "altur", "secrets": ["${ALTUR_SECRET}"], "time_zone": "UTC"}
        },
        "sinks": {
            "recorder": {
                "plugin": "recording",
                "delivery": {"retry_schedule": ["50ms"], "jitter": 0},
            }
        },
        "routes": [{"sources": ["altur"], "sinks": ["recorder"]}],
    }


async def test_signed_seed_payload_reaches_the_sink(make_router, config, secret, load):
    router = await make_router(config, environ={"ALTUR_SECRET": secret})
    body = load("campaign_cycle_completed")
    status, answer = await router.post("altur", body)
    assert status == 200, answer
    assert answer["status"] == "accepted"
    assert answer["sinks"] == ["recorder"]
    events = await router.recorder.wait_for("recorder", 1)
    event = events[0]
    assert event.id == answer["event_id"]
    assert event.source == "altur"
    assert event.type == EventType.CAMPAIGN_CYCLE_COMPLETED
    assert event.idempotency_key == "evt_5tH9aB2nQ8vR3mZ1cP0k"
    assert event.data.campaign.id == "1234"
    assert event.data.campaign.status is CampaignStatus.COOLDOWN
    assert event.data.campaign.cycle == 2
    assert event.raw == json.loads(body)

    # Altur retries with the same payload: the second delivery is recognised, not routed again
    status, again = await router.post("altur", body)
    assert status == 200, again
    assert again == {"status": "duplicate", "event_id": event.id}


async def test_unsigned_post_gets_a_json_401(make_router, config, secret, load):
    router = await make_router(config, environ={"ALTUR_SECRET": secret})
    status, answer = await router.post("altur", load("on_call_end"), signed=False)
    assert status == 401
    assert answer == {"error": "unauthorized", "message": "missing X-Altur-Signature header"}
    status, answer = await router.post(
        "altur",
        load("on_call_end"),
        signed=False,
        headers={"X-Altur-Signature": base64.b64encode(bytes(32)).decode()},
    )
    assert status == 401
    assert answer == {
        "error": "unauthorized",
        "message": "X-Altur-Signature does not match the body",
    }
    assert secret not in json.dumps(answer)
    # a genuine request afterwards is the only event delivered
    status, _ = await router.post("altur", load("on_call_end"))
    assert status == 200
    events = await router.recorder.wait_for("recorder", 1)
    assert [event.type for event in events] == ["call.ended"]
    assert router.recorder.events["recorder"][0].subject == "cll_gBoLtd02pUI50QwXkFjB"


async def test_pretty_body_signed_over_compact_json_is_accepted(make_router, config, secret, load):
    router = await make_router(config, environ={"ALTUR_SECRET": secret})
    payload = json.loads(load("on_call_end"))
    pretty = json.dumps(payload, indent=4, ensure_ascii=False).encode("utf-8")
    compact = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    digest = hmac.new(base64.b64decode(secret), compact, hashlib.sha256).digest()
    status, answer = await router.post(
        "altur",
        pretty,
        signed=False,
        headers={"x-altur-signature": base64.b64encode(digest).decode()},
    )
    assert status == 200, answer
    events = await router.recorder.wait_for("recorder", 1)
    assert events[0].data.call.transcript[0].text == "Hello am I speaking with Sofía?"


async def test_signed_malformed_body_gets_a_400_naming_the_field(make_router, config, secret):
    router = await make_router(config, environ={"ALTUR_SECRET": secret})
    body = b'{"event_type": "on_call_end", "id": "c1", "duration": "long"}'
    status, answer = await router.post("altur", body)
    assert status == 400
    assert answer == {
        "error": "invalid_payload",
        "message": "expected a whole number, got string",
        "field": "duration",
    }


async def test_a_call_start_does_not_swallow_the_call_end(make_router, config, secret, recorded):
    """Both events of one call carry the call's id and no event_id: both are delivered."""
    router = await make_router(config, environ={"ALTUR_SECRET": secret})
    started = json.dumps({"event_type": "on_call_start", "id": "cll_shared"}).encode()
    ended = json.dumps(
        {"event_type": "on_call_end", "id": "cll_shared", "status": "ended"}
    ).encode()
    for body in (started, ended):
        status, answer = await router.post("altur", body)
        assert (status, answer["status"]) == (200, "accepted"), answer
    status, answer = await router.post("altur", ended)  # Altur's retry of the call end
    assert (status, answer["status"]) == (200, "duplicate")
    events = await recorded.wait_for("recorder", 2)
    assert sorted(event.type for event in events) == ["altur.on_call_start", "call.ended"]
