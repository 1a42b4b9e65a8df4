"""A running router: webhook in, HubSpot (the fake) written through the crm sink."""

import asyncio
import logging
import time
from datetime import UTC, datetime

from eventrouter import (
    AnsweredBy,
    Call,
    CallDirection,
    CallStatus,
    Contact,
    EventData,
    SignedRequest,
    Source,
    TranscriptTurn,
    hookimpl,
    json_object,
    parse_timestamp,
)
from eventrouter.testing import DeliveryState

TOKEN = "pat-na1-0a1b2c3d-4e5f-6789-abcd-ef0123456789"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ALTUR_CALL = {
    "event_type": "on_call_end",
    "id": "cll_gBoLtd02pUI50QwXkFjB",
    "type": "outbound",
    "status": "ended",
    "phone_number_from": "+15550000001",
    "phone_number_to": "+521234567890",
    "answered_by": "human",
    "started_at": "2024-12-19T15:00:10Z",
    "ended_at": "2024-12-19T15:00:55Z",
    "duration": 45,
    "recording_url": "https://api.altur.io/api/v1.0/call/cll_gBoLtd02pUI50QwXkFjB/recording",
    "transcript": [
        {
            "sent_by": "assistant",
            "sent_at": "2024-12-19T15:00:10Z",
            "content": "Hello am I speaking with Sofía?",
        },
        {"sent_by": "user", "sent_at": "2024-12-19T15:00:20Z", "content": "Yes, who is this?"},
    ],
    "end_user": {
        "display_name": "John Doe",
        "phone_number": "+521234567890",
        "extracted_data": {
            "Payment Amount": "1200",
            "Payment Date": "2024-12-26",
            "Payment Medium": "app",
        },
    },
}


class AlturLikeSource(Source):
    """Test-only: turns an Altur on_call_end body into a call.ended event (no signature)."""

    type_name = "test-altur-calls"
    provider = "altur"

    def authenticate(self, request):
        return None

    def parse(self, request):
        payload = json_object(request.body)
        user = payload["end_user"]
        speakers = {"assistant": "agent", "user": "contact"}
        call = Call(
            id=payload["id"],
            direction=CallDirection(payload["type"]),
            status=CallStatus.COMPLETED,
            provider_status=payload["status"],
            answered_by=AnsweredBy(payload["answered_by"]),
            started_at=parse_timestamp(payload["started_at"], field="started_at"),
            ended_at=parse_timestamp(payload["ended_at"], field="ended_at"),
            duration_seconds=payload["duration"],
            recording_url=payload["recording_url"],
            from_number=payload["phone_number_from"],
            to_number=payload["phone_number_to"],
            transcript=tuple(
                TranscriptTurn(
                    speakers[turn["sent_by"]],
                    turn["content"],
                    parse_timestamp(turn["sent_at"], field="sent_at"),
                )
                for turn in payload["transcript"]
            ),
        )
        return self.make_event(
            type="call.ended",
            provider_type=payload["event_type"],
            idempotency_key=payload["id"],
            time=call.ended_at,
            raw=payload,
            data=EventData(
                contact=Contact(phone=user["phone_number"], name=user["display_name"]),
                call=call,
                attributes={"extracted_data": user["extracted_data"]},
            ),
        )

    def sign(self, body, *, content_type="application/json"):
        return SignedRequest()


class AlturLikePlugin:
    @hookimpl
    def register_sources(self, register):
        register(AlturLikeSource)


def _config(hubspot, **sink):
    return {
        "sources": {
            "altur": {"plugin": "test-altur-calls"},
            "hooks": {"plugin": "standard-webhooks", "secrets": [WHSEC]},
        },
        "sinks": {
            "hubspot": {
                "plugin": "crm",
                "token": "${HUBSPOT_TOKEN}",
                "api_base": hubspot.url,
                "batch_window": "20ms",
                "property_mapping": {
                    "Payment Amount": "payment_amount",
                    "Payment Date": "payment_date",
                },
                "delivery": {"retry_schedule": ["50ms", "50ms", "50ms"], "jitter": 0},
                **sink,
            },
            "recorder": {"plugin": "recording"},
        },
        "routes": [{"sinks": ["hubspot", "recorder"]}],
    }


async def _settled(router, event_id, sink="hubspot", timeout=10.0):
    """The delivery of ``event_id`` to ``sink`` once it is done or dead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stored = await router.store.get_event(event_id)
        if stored is not None:
            record = next(d for d in stored.deliveries if d.sink == sink)
            if record.state in (DeliveryState.DONE, DeliveryState.DEAD):
                return record
        await asyncio.sleep(0.05)
    raise AssertionError(f"delivery of {event_id} to {sink} did not settle in {timeout}s")


async def test_altur_call_reaches_hubspot(make_router, register_plugin, hubspot):
    register_plugin(AlturLikePlugin())
    router = await make_router(_config(hubspot), environ={"HUBSPOT_TOKEN": TOKEN})
    status, body = await router.post("altur", ALTUR_CALL)
    assert status == 200, body
    record = await _settled(router, body["event_id"])
    assert record.state == DeliveryState.DONE
    assert record.attempts == 1

    contact_id, contact = hubspot.find("contacts", "eventrouter_phone", "+521234567890")
    assert contact == {
        "payment_amount": "1200",
        "payment_date": "2024-12-26",
        "firstname": "John",
        "lastname": "Doe",
        "phone": "+521234567890",
        "eventrouter_phone": "+521234567890",
    }
    call_id, call = hubspot.find("calls", "eventrouter_event_id", "altur:cll_gBoLtd02pUI50QwXkFjB")
    assert call == {
        "eventrouter_event_id": "altur:cll_gBoLtd02pUI50QwXkFjB",
        "hs_timestamp": "2024-12-19T15:00:10.000Z",
        "hs_call_title": "Outbound call via altur",
        "hs_call_body": (
            "<p>Answered by: human</p><p>altur status: ended</p>"
            "<p><strong>Agent:</strong> Hello am I speaking with Sofía?</p>"
            "<p><strong>Contact:</strong> Yes, who is this?</p>"
        ),
        "hs_call_direction": "OUTBOUND",
        "hs_call_status": "COMPLETED",
        "hs_call_duration": "45000",
        "hs_call_recording_url": "https://api.altur.io/api/v1.0/call/cll_gBoLtd02pUI50QwXkFjB/recording",
        "hs_call_from_number": "+15550000001",
        "hs_call_to_number": "+521234567890",
        "hs_call_disposition": "f240bbac-87c9-4f6e-bf70-924b57d47db7",
    }
    assert hubspot.linked("calls", call_id) == [contact_id]
    assert {r.authorization for r in hubspot.requests} == {f"Bearer {TOKEN}"}

    # Altur retrying the webhook: the core de-duplicates it; nothing more reaches HubSpot
    status, again = await router.post("altur", ALTUR_CALL)
    assert status == 200, again
    await router.recorder.wait_for("recorder", 1)
    assert len(hubspot.objects["calls"]) == 1


async def test_rate_limited_call_is_retried_after_retry_after(
    make_router, register_plugin, hubspot
):
    register_plugin(AlturLikePlugin())
    hubspot.fail(
        "/crm/v3/objects/calls/batch/create",
        429,
        {
            "status": "error",
            "message": "You have reached your ten_secondly_rolling limit.",
            "errorType": "RATE_LIMIT",
            "policyName": "TEN_SECONDLY_ROLLING",
        },
        headers={"Retry-After": "0.3"},
    )
    router = await make_router(
        _config(hubspot, delivery={"retry_schedule": ["30s"], "jitter": 0}),
        environ={"HUBSPOT_TOKEN": TOKEN},
    )
    started = time.monotonic()
    status, body = await router.post("altur", ALTUR_CALL)
    assert status == 200, body
    record = await _settled(router, body["event_id"])
    # retried after HubSpot's Retry-After, not the sink's 30 s schedule
    assert time.monotonic() - started < 10
    assert record.state == DeliveryState.DONE
    assert record.attempts == 2
    assert len(hubspot.posted("/crm/v3/objects/calls/batch/create")) == 2
    assert len(hubspot.objects["calls"]) == 1
    assert len(hubspot.associations) == 1
    # refused (429), so nothing was written: the retry searched and created
    assert len(hubspot.posted("/crm/v3/objects/calls/search")) == 2


async def test_generic_standard_webhook_writes_nothing(make_router, register_plugin, hubspot):
    register_plugin(AlturLikePlugin())
    router = await make_router(_config(hubspot), environ={"HUBSPOT_TOKEN": TOKEN})
    status, body = await router.post(
        "hooks", {"type": "invoice.paid", "timestamp": "2026-01-01T00:00:00Z", "data": {"id": 1}}
    )
    assert status == 200, body
    record = await _settled(router, body["event_id"])
    assert record.state == DeliveryState.DONE
    events = await router.recorder.wait_for("recorder", 1)
    assert events[0].type == "invoice.paid"
    assert events[0].time == datetime(2026, 1, 1, tzinfo=UTC)
    assert hubspot.requests == []


async def test_rejected_token_is_dead_lettered_without_the_token(
    make_router, register_plugin, hubspot, caplog
):
    caplog.set_level(logging.DEBUG)
    register_plugin(AlturLikePlugin())
    wrong = "pat-na1-99999999-8888-7777-6666-555555555555"
    router = await make_router(_config(hubspot), environ={"HUBSPOT_TOKEN": wrong})
    status, body = await router.post("altur", ALTUR_CALL)
    assert status == 200, body
    record = await _settled(router, body["event_id"])
    assert record.state == DeliveryState.DEAD
    assert record.attempts == 1
    assert record.last_error.startswith(
        "HubSpot token rejected (HTTP 401): INVALID_AUTHENTICATION: "
    )
    (dead,) = await router.store.list_dead_letters(sink="hubspot")
    assert dead.reason == record.last_error
    assert wrong not in record.last_error
    assert wrong not in caplog.text
    assert hubspot.requests[0].authorization == f"Bearer {wrong}"
