"""Through a running router: seed payloads posted with a token reach a recording sink."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from eventrouter import CallStatus, CampaignStatus, ConfigError

TOKEN = "tok_3q9VnD8xKp2LmW7rTz5Y"
FORM = "application/x-www-form-urlencoded"


def config(**source: Any) -> dict[str, Any]:
    return {
        "sources": {
            "exotel": {"plugin": "exotel", "tokens": ["${EXOTEL_TOKEN}"], **source},
        },
        "sinks": {
            "recorder": {
                "plugin": "recording",
                "delivery": {"retry_schedule": ["50ms"], "jitter": 0},
            }
        },
        "routes": [{"sinks": ["recorder"]}],
    }


ENV = {"EXOTEL_TOKEN": TOKEN}


async def test_seed_call_status_reaches_the_sink(make_router, fixture_body):
    router = await make_router(config(), environ=ENV)
    status, answer = await router.post("exotel", fixture_body("call_status_completed.json"))
    assert status == 200, answer
    assert answer["status"] == "accepted"
    assert answer["sinks"] == ["recorder"]
    [event] = await router.recorder.wait_for("recorder", 1)
    assert event.id == answer["event_id"]
    assert event.source == "exotel"
    assert event.type == "call.ended"
    assert event.provider == "exotel"
    assert event.idempotency_key == "call_status:call_def456:completed"
    assert event.data.call.id == "call_def456"
    assert event.data.call.status is CallStatus.COMPLETED
    assert event.data.contact.phone == "+919876543210"
    assert event.data.campaign.id == "camp_abc123"
    assert event.raw["number"] == "+919876543210"
    assert TOKEN not in event.to_json()


async def test_form_encoded_schedule_and_campaign(make_router, fixture_body):
    router = await make_router(config(), environ=ENV)
    status, answer = await router.post(
        "exotel", fixture_body("call_schedule_repeated.form"), content_type=FORM
    )
    assert status == 200, answer
    status, answer = await router.post(
        "exotel", fixture_body("campaign_status.form"), content_type=FORM
    )
    assert status == 200, answer
    schedule, campaign = await router.recorder.wait_for("recorder", 2)
    by_type = {event.type: event for event in (schedule, campaign)}
    exhausted = by_type["call.attempts_exhausted"]
    assert exhausted.data.call.attempt_ids == ("call_def456", "call_ghi789", "call_jkl012")
    completed = by_type["campaign.completed"]
    assert completed.data.campaign.status is CampaignStatus.COMPLETED
    assert completed.data.campaign.report_url == "https://s3.amazonaws.com/.../campaign_report.csv"


async def test_unsigned_is_401_json(make_router, fixture_body):
    router = await make_router(config(), environ=ENV)
    status, answer = await router.post(
        "exotel", fixture_body("call_status_completed.json"), signed=False
    )
    assert status == 401
    assert answer["error"] == "unauthorized"
    assert "token" in answer["message"]
    status, answer = await router.post(
        "exotel",
        fixture_body("call_status_completed.json"),
        signed=False,
        query={"token": "tok_wrong_but_long_enough"},
    )
    assert status == 401
    assert answer == {"error": "unauthorized", "message": "invalid token"}
    assert router.recorder.events.get("recorder", []) == []


async def test_duplicates_and_later_statuses(make_router, fixture_body):
    router = await make_router(config(), environ=ENV)
    body = fixture_body("call_status_no_answer_hyphen.json")
    status, first = await router.post("exotel", body)
    assert (status, first["status"]) == (200, "accepted")
    status, again = await router.post("exotel", body)
    assert (status, again) == (200, {"status": "duplicate", "event_id": first["event_id"]})
    later = body.replace(b'"no-answer"', b'"completed"')
    status, answer = await router.post("exotel", later)
    assert (status, answer["status"]) == (200, "accepted")
    events = await router.recorder.wait_for("recorder", 2)
    assert [event.data.call.status for event in events] == [
        CallStatus.NO_ANSWER,
        CallStatus.COMPLETED,
    ]


async def test_unknown_shape_is_accepted(make_router):
    router = await make_router(config(), environ=ENV)
    status, answer = await router.post("exotel", {"sms_sid": "s1", "status": "sent"})
    assert (status, answer["status"]) == (200, "accepted")
    [event] = await router.recorder.wait_for("recorder", 1)
    assert event.type == "exotel.callback"


async def test_malformed_body_is_400(make_router):
    router = await make_router(config(), environ=ENV)
    status, answer = await router.post("exotel", b"{not json")
    assert status == 400
    assert answer["error"] == "invalid_payload"
    status, answer = await router.post(
        "exotel", {"call_sid": "c", "number": "1", "date_updated": "soon"}
    )
    assert status == 400
    assert answer["field"] == "date_updated"


async def test_allowed_networks_check_the_peer_not_its_x_forwarded_for(make_router, fixture_body):
    # behind a proxy in [server] trusted_proxies the core resolves the client first: see
    # tests/test_connections.py, which runs a real server with one
    body = fixture_body("call_status_completed.json")
    router = await make_router(config(allowed_networks=["203.0.113.0/24"]), environ=ENV)
    status, answer = await router.post("exotel", body)
    assert status == 403
    assert answer["error"] == "forbidden"
    status, answer = await router.post("exotel", body, headers={"X-Forwarded-For": "203.0.113.7"})
    assert status == 403, "X-Forwarded-For believed from an untrusted peer"

    local = await make_router(config(allowed_networks=["127.0.0.0/8", "::1"]), environ=ENV)
    status, answer = await local.post("exotel", body, headers={"X-Forwarded-For": "198.51.100.1"})
    assert status == 200, answer


async def test_one_path_per_kind(make_router, fixture_body: Callable[[str], bytes]):
    document = config()
    document["sources"] = {
        "exotel-calls": {"plugin": "exotel", "tokens": [TOKEN], "kind": "call_status"},
        "exotel-campaigns": {"plugin": "exotel", "tokens": [TOKEN], "kind": "campaign_status"},
    }
    router = await make_router(document)
    assert router.config.source_paths == {
        "exotel-calls": "/hooks/exotel-calls",
        "exotel-campaigns": "/hooks/exotel-campaigns",
    }
    status, _ = await router.post("exotel-calls", {"call_sid": "c1", "status": "busy"})
    assert status == 200
    status, _ = await router.post("exotel-campaigns", {"campaign_sid": "k1", "status": "Paused"})
    assert status == 200
    events = await router.recorder.wait_for("recorder", 2)
    assert sorted((event.source, event.type) for event in events) == [
        ("exotel-calls", "call.ended"),
        ("exotel-campaigns", "campaign.status_changed"),
    ]


async def test_refuses_to_start_without_a_token(make_router):
    document = config()
    del document["sources"]["exotel"]["tokens"]
    with pytest.raises(ConfigError) as caught:
        await make_router(document)
    assert any("insecure = true" in problem for problem in caught.value.problems)
