"""Through a running router: signed Pelcro webhooks are stored and delivered, the token redacted."""

from __future__ import annotations

import json
import logging

import pytest

from eventrouter import ConfigError
from eventrouter.testing import installed_types, parse_config
from eventrouter_pelcro import sign
from eventrouter_pelcro.signature import SIGNATURE_HEADER

SEED_TOKEN = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9..."
SECRET = "pelcro-live-secret-0123456789"
OLD_SECRET = "pelcro-old-secret-9876543210"
FAST = {"retry_schedule": ["50ms"], "jitter": 0}


@pytest.fixture
def config() -> dict:
    return {
        "sources": {
            "pelcro": {"plugin": "pelcro", "secrets": ["${PELCRO_SECRET}", "${PELCRO_OLD_SECRET}"]}
        },
        "sinks": {
            "redacted": {"plugin": "recording", "delivery": FAST},
            "clear": {"plugin": "recording", "delivery": {**FAST, "include_sensitive": True}},
            "subscriptions": {"plugin": "recording", "delivery": FAST},
        },
        "routes": [
            {"sinks": ["redacted", "clear"], "types": ["campaign.*"]},
            {"sinks": ["subscriptions"], "types": ["pelcro.subscription.*"]},
        ],
    }


ENVIRON = {"PELCRO_SECRET": SECRET, "PELCRO_OLD_SECRET": OLD_SECRET}


async def test_seed_payload_is_delivered_redacted_and_in_clear(
    make_router, config, fixture_bytes, caplog
):
    caplog.set_level(logging.DEBUG)
    router = await make_router(config, environ=ENVIRON)
    status, body = await router.post("pelcro", fixture_bytes("campaign_triggered.json"))
    assert status == 200, body
    assert body["status"] == "accepted"
    assert body["sinks"] == ["redacted", "clear"]

    [redacted] = await router.recorder.wait_for("redacted", 1)
    [clear] = await router.recorder.wait_for("clear", 1)
    for event in (redacted, clear):
        assert event.id == body["event_id"]
        assert event.type == "campaign.triggered"
        assert event.idempotency_key == "evt_a1b2C3d4E5f6g7H8i9J0k1L2"
        assert event.data.contact.external_id == "67890"
        assert event.data.campaign.id == "123"
        assert event.sensitive == ("data.magic_link_token",)

    assert SEED_TOKEN not in redacted.to_json()
    assert redacted.raw["data"]["magic_link_token"] == "[redacted]"
    assert clear.raw["data"]["magic_link_token"] == SEED_TOKEN
    assert clear.raw == json.loads(fixture_bytes("campaign_triggered.json"))

    stored = await router.store.get_event(body["event_id"])
    assert stored is not None
    # a sink asks for the token (include_sensitive): the store keeps it for that sink
    assert stored.event.raw["data"]["magic_link_token"] == SEED_TOKEN
    assert SEED_TOKEN not in caplog.text
    assert SECRET not in caplog.text


async def test_the_token_is_not_stored_when_no_sink_asks_for_it(
    make_router, config, fixture_bytes, tmp_path
):
    config["sinks"]["clear"]["delivery"]["include_sensitive"] = False
    router = await make_router(config, environ=ENVIRON)
    status, body = await router.post("pelcro", fixture_bytes("campaign_triggered.json"))
    assert status == 200, body
    stored = await router.store.get_event(body["event_id"])
    assert stored is not None
    assert stored.event.raw["data"]["magic_link_token"] == "[redacted]"
    assert stored.event.sensitive == ("data.magic_link_token",)
    await router.recorder.wait_for("clear", 1)
    await router.store.close()
    # nowhere in the store's files, the write-ahead log included
    files = list(tmp_path.rglob("*.db*"))
    assert files
    for path in files:
        assert SEED_TOKEN.encode() not in path.read_bytes(), path.name


async def test_unsigned_request_is_refused_with_json(make_router, config, fixture_bytes):
    router = await make_router(config, environ=ENVIRON)
    status, body = await router.post(
        "pelcro", fixture_bytes("campaign_triggered.json"), signed=False
    )
    assert status == 401
    assert body == {"error": "unauthorized", "message": "missing X-Pelcro-Hmac-SHA256 header"}
    assert await router.store.list_events() == []


async def test_wrong_signature_is_refused(make_router, config, fixture_bytes):
    router = await make_router(config, environ=ENVIRON)
    data = fixture_bytes("campaign_triggered.json")
    status, body = await router.post(
        "pelcro", data, signed=False, headers={SIGNATURE_HEADER: sign(data, "not-the-secret")}
    )
    assert status == 401
    assert body["error"] == "unauthorized"
    assert SECRET not in json.dumps(body)


async def test_old_secret_still_accepted_during_rotation(make_router, config, fixture_bytes):
    router = await make_router(config, environ=ENVIRON)
    data = fixture_bytes("campaign_run_completed.json")
    status, body = await router.post(
        "pelcro", data, signed=False, headers={SIGNATURE_HEADER: sign(data, OLD_SECRET)}
    )
    assert status == 200, body
    [event] = await router.recorder.wait_for("redacted", 1)
    assert event.type == "campaign.completed"
    assert event.data.campaign.run_id == "999"


async def test_both_run_completed_shapes_and_a_subscription_event(
    make_router, config, fixture_bytes
):
    router = await make_router(config, environ=ENVIRON)
    for name in (
        "campaign_run_completed.json",
        "campaign_run_completed_flat.json",
        "subscription_created.json",
        "subscription_canceled.json",
    ):
        status, body = await router.post("pelcro", fixture_bytes(name))
        assert status == 200, (name, body)
        assert body["status"] == "accepted"
    runs = await router.recorder.wait_for("redacted", 2)
    assert [e.data.campaign.id for e in runs] == ["123", "542"]
    assert {e.data.campaign.status for e in runs} == {"completed"}
    subscriptions = await router.recorder.wait_for("subscriptions", 2)
    assert [e.type for e in subscriptions] == [
        "pelcro.subscription.created",
        "pelcro.subscription.canceled",
    ]
    assert subscriptions[1].data.contact.email == "john.doe@example.com"


async def test_redelivery_is_a_duplicate(make_router, config, fixture_bytes):
    router = await make_router(config, environ=ENVIRON)
    data = fixture_bytes("campaign_triggered.json")
    first = await router.post("pelcro", data)
    second = await router.post("pelcro", data)
    assert first[0] == second[0] == 200
    assert second[1] == {"status": "duplicate", "event_id": first[1]["event_id"]}


async def test_malformed_signed_body_is_a_400_naming_the_field(make_router, config):
    router = await make_router(config, environ=ENVIRON)
    payload = {"type": "campaign.triggered", "id": "evt_1", "created": 1704067200, "data": {}}
    status, body = await router.post("pelcro", payload)
    assert status == 400
    assert body == {
        "error": "invalid_payload",
        "message": "required object is missing",
        "field": "data.campaign",
    }


async def test_insecure_source_accepts_unsigned_requests(make_router, fixture_bytes):
    router = await make_router(
        {
            "sources": {"pelcro": {"plugin": "pelcro", "insecure": True}},
            "sinks": {"redacted": {"plugin": "recording"}},
            "routes": [{"sinks": ["redacted"]}],
        }
    )
    status, body = await router.post(
        "pelcro", fixture_bytes("subscription_canceled.json"), signed=False
    )
    assert status == 200, body
    [event] = await router.recorder.wait_for("redacted", 1)
    assert event.type == "pelcro.subscription.canceled"


def test_missing_secret_environment_variable_is_a_config_error(config):
    with pytest.raises(ConfigError) as info:
        parse_config(config, installed_types(), environ={})
    assert any("PELCRO_SECRET is not set" in p for p in info.value.problems)
