"""Each Altur payload normalises field by field; malformed ones raise PayloadError naming the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from eventrouter import (
    AnsweredBy,
    Call,
    CallDirection,
    CallStatus,
    Campaign,
    CampaignStatus,
    Contact,
    Event,
    EventType,
    PayloadError,
    TranscriptTurn,
    WebhookRequest,
)
from eventrouter_altur.parse import CALL_STATUSES, CAMPAIGN_STATUSES

MEXICO = timezone(timedelta(hours=-6))


def parse(source, body: bytes | str | dict) -> Event:
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    before = datetime.now(UTC)
    event = source.parse(WebhookRequest(body=body))
    assert before <= event.received_at <= datetime.now(UTC)
    assert event.id.startswith("evt_")
    assert event.source == "altur"
    assert event.provider == "altur"
    assert event.specversion == "1.0"
    assert event.sensitive == ()
    assert event.raw == json.loads(body)
    assert Event.from_json(event.to_json()) == event
    return event


def error(source, body: bytes | str | dict) -> PayloadError:
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    with pytest.raises(PayloadError) as caught:
        source.parse(WebhookRequest(body=body))
    return caught.value


def test_on_call_end(source, load):
    event = parse(source, load("on_call_end"))
    assert event.type == EventType.CALL_ENDED == "call.ended"
    assert event.provider_type == "on_call_end"
    assert event.idempotency_key == "on_call_end:cll_gBoLtd02pUI50QwXkFjB"
    assert event.subject == "cll_gBoLtd02pUI50QwXkFjB"
    assert event.time == datetime(2024, 12, 19, 15, 0, 10, tzinfo=UTC)
    assert event.data.campaign is None
    assert event.data.contact == Contact(
        phone="+521234567890", email=None, name="John Doe", external_id="user_12345"
    )
    call = event.data.call
    assert call is not None
    assert call.id == "cll_gBoLtd02pUI50QwXkFjB"
    assert call.direction is CallDirection.OUTBOUND
    assert call.status is CallStatus.COMPLETED
    assert call.provider_status == "ended"
    assert call.answered_by is AnsweredBy.HUMAN
    assert call.started_at == datetime(2024, 12, 19, 15, 0, 10, tzinfo=UTC)
    assert call.ended_at == datetime(2024, 12, 19, 15, 0, 10, tzinfo=UTC)
    assert call.duration_seconds == 45
    assert call.recording_url == (
        "https://api.altur.io/api/v1.0/call/cll_gBoLtd02pUI50QwXkFjB/recording"
    )
    assert call.transcript == (
        TranscriptTurn(
            speaker="agent",
            text="Hello am I speaking with Sofía?",
            at=datetime(2024, 12, 19, 15, 0, 0, tzinfo=UTC),
        ),
        TranscriptTurn(
            speaker="contact",
            text="Yes, who is this?",
            at=datetime(2024, 12, 19, 15, 0, 10, tzinfo=UTC),
        ),
    )
    assert call.attempt_ids == ()
    # the docs' placeholder numbers are no phone numbers
    assert call.from_number is None
    assert call.to_number is None
    assert event.data.attributes == {
        "extracted_data": {
            "Payment Amount": "1200",
            "Payment Date": "2024-12-26",
            "Payment Medium": "app",
        },
        "tags": ["payment_promise", "call_later"],
        "end_user_status": "converted",
        "assistant": {
            "id": "6cy951e6-0000-0000-0000-000000000000",
            "name": "Diana Arroyo",
            "nickname": "DebtCollectorBot",
        },
        "billed_duration_seconds": 45,
    }


def test_on_call_end_older_shape(source, load):
    event = parse(source, load("on_call_end_legacy"))
    assert event.type == "call.ended"
    assert event.provider_type == "on_call_end"
    assert event.idempotency_key == "on_call_end:cll_gBoLtd02pUI50QwXkFjB"
    assert event.subject == "cll_gBoLtd02pUI50QwXkFjB"
    # no timestamp of the call in this shape: the event is dated when it was received
    assert event.time == event.received_at
    assert event.data.contact == Contact(
        phone="+521234567890",
        name="John Doe",
        external_id="2be951e6-7798-47cd-878d-49b2918a3bba",
    )
    assert event.data.call == Call(
        id="cll_gBoLtd02pUI50QwXkFjB",
        direction=None,
        status=CallStatus.COMPLETED,
        provider_status="ended",
        answered_by=AnsweredBy.MACHINE,
        started_at=None,
        ended_at=None,
        duration_seconds=None,
        recording_url="https://api.altur.io/api/v1.0/call/cll_gBoLtd02pUI50QwXkFjB/recording",
        transcript=(
            TranscriptTurn(
                speaker="agent",
                text="Hello am I speaking with Sofía?",
                at=datetime(2024, 12, 19, 15, 0, 0, tzinfo=UTC),
            ),
        ),
        from_number=None,
        to_number=None,
    )
    assert event.data.attributes == {
        "extracted_data": {"Payment Amount": "1200", "Payment Date": "2024-12-26"},
        "end_user_status": "converted",
        "assistant": {
            "id": "6cy951e6-9877-4d7c-88d7-56b4948d3cce",
            "name": "Diana Arroyo",
            "nickname": "DebtCollectorBot",
        },
    }


def test_on_call_end_inbound_takes_the_callers_number(source, load):
    event = parse(source, load("on_call_end_inbound"))
    assert event.type == "call.ended"
    assert event.idempotency_key == "on_call_end:cll_7HqP2mZx0aLk3VbN9sRt"
    assert event.subject == "cll_7HqP2mZx0aLk3VbN9sRt"
    assert event.time == datetime(2025, 3, 4, 10, 15, 30, tzinfo=UTC)
    assert event.data.contact == Contact(
        phone="+525512345678", name=None, external_id="9ad051e6-1111-2222-3333-444455556666"
    )
    assert event.data.call == Call(
        id="cll_7HqP2mZx0aLk3VbN9sRt",
        direction=CallDirection.INBOUND,
        status=CallStatus.NO_ANSWER,
        provider_status="no-answer",
        answered_by=AnsweredBy.UNKNOWN,
        started_at=None,
        ended_at=datetime(2025, 3, 4, 10, 15, 30, tzinfo=UTC),
        duration_seconds=0,
        recording_url=None,
        transcript=(),
        from_number="+525512345678",
        to_number="+525598765432",
    )
    assert event.data.attributes == {
        "extracted_data": {},
        "tags": [],
        "end_user_status": "new",
        "assistant": {
            "id": "6cy951e6-9877-4d7c-88d7-56b4948d3cce",
            "name": "Sofía Ramírez",
            "nickname": "FrontDesk",
        },
        "billed_duration_seconds": 0,
    }


def test_outbound_contact_falls_back_to_the_called_number(source):
    event = parse(
        source,
        {
            "event_type": "on_call_end",
            "id": "c1",
            "type": "outbound",
            "phone_number_from": "+525598765432",
            "phone_number_to": "+14155550123",
        },
    )
    assert event.data.contact == Contact(phone="+14155550123")
    assert event.data.call.from_number == "+525598765432"
    assert event.data.call.to_number == "+14155550123"


def test_campaign_user_fills_what_end_user_lacks(source):
    event = parse(
        source,
        {
            "event_type": "on_call_end",
            "id": "c1",
            "type": "outbound",
            "phone_number_to": "+14155550123",
            "end_user": {"id": "u1"},
            "campaign_user": {"f_id": 77, "name": "Ana", "contact": "+525512345678"},
        },
    )
    assert event.data.contact == Contact(phone="+525512345678", name="Ana", external_id="77")


def test_a_call_without_anyone_has_no_contact(source):
    event = parse(source, {"event_type": "on_call_end", "id": "c1"})
    assert event.data.contact is None
    assert event.data.call == Call(id="c1")
    assert event.data.attributes == {}


def test_event_id_is_the_key_when_a_call_carries_one(source):
    event = parse(source, {"event_type": "on_call_end", "event_id": "evt_1", "id": "c1"})
    assert event.idempotency_key == "evt_1"
    assert event.subject == "c1"


def test_naive_call_timestamps_are_read_in_the_time_zone(make_source):
    source = make_source(time_zone="America/Mexico_City")
    event = parse(
        source,
        {
            "event_type": "on_call_end",
            "id": "c1",
            "started_at": "2024-12-19T09:00:00",
            "ended_at": "2024-12-19T09:00:45",
            "transcript": [
                {"sent_by": "user", "sent_at": "2024-12-19T09:00:05", "content": "Hola"}
            ],
        },
    )
    assert event.data.call.started_at == datetime(2024, 12, 19, 15, 0, tzinfo=UTC)
    assert event.data.call.ended_at == datetime(2024, 12, 19, 15, 0, 45, tzinfo=UTC)
    assert event.data.call.transcript[0].at == datetime(2024, 12, 19, 15, 0, 5, tzinfo=UTC)
    assert event.time.utcoffset() == timedelta(hours=-6)


def test_numbers_without_plus_use_the_phone_region(make_source):
    body = {
        "event_type": "on_call_end",
        "id": "c1",
        "type": "inbound",
        "phone_number_from": "5512345678",
        "end_user": {"phone_number": "55 9876 5432"},
    }
    unread = parse(make_source(), body)
    assert unread.data.contact is None
    # without a region the numbers are not phone numbers: the call keeps them as sent
    assert unread.data.call.from_number == "5512345678"
    event = parse(make_source(phone_region="MX"), body)
    assert event.data.contact == Contact(phone="+525598765432")
    assert event.data.call.from_number == "+525512345678"


@pytest.mark.parametrize(
    ("sent", "kept"),
    [("+000000000000", None), ("000", None), ("", None), ("ext. 42", "ext. 42"), (12, "12")],
)
def test_call_numbers_that_are_not_phone_numbers(source, sent, kept):
    event = parse(
        source,
        {"event_type": "on_call_end", "id": "c1", "type": "outbound", "phone_number_to": sent},
    )
    assert event.data.call.to_number == kept
    assert event.data.contact is None  # never a contact phone that is not E.164


def test_other_events_of_a_call_do_not_share_its_idempotency_key(source):
    started = parse(source, {"event_type": "on_call_start", "id": "cll_1"})
    ended = parse(source, {"event_type": "on_call_end", "id": "cll_1"})
    older = parse(source, {"type": "on_call_end", "id": "cll_1"})
    assert started.idempotency_key == "on_call_start:cll_1"
    assert ended.idempotency_key == older.idempotency_key == "on_call_end:cll_1"
    # a delivery id, where Altur sends one, is the key
    assert (
        parse(
            source, {"event_type": "on_call_end", "id": "cll_1", "event_id": "e9"}
        ).idempotency_key
        == "e9"
    )


@pytest.mark.parametrize(("status", "expected"), sorted(CALL_STATUSES.items()))
def test_every_documented_call_status(source, status, expected):
    event = parse(source, {"event_type": "on_call_end", "id": "c1", "status": status})
    assert event.data.call.status is expected
    assert event.data.call.provider_status == status


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("ended", CallStatus.COMPLETED),
        ("in-progress", CallStatus.IN_PROGRESS),
        ("in_progress", CallStatus.IN_PROGRESS),
        ("NO_ANSWER", CallStatus.NO_ANSWER),
        ("Busy", CallStatus.BUSY),
        ("forwarding", CallStatus.IN_PROGRESS),
        ("created", CallStatus.QUEUED),
        ("teleported", CallStatus.UNKNOWN),
    ],
)
def test_call_status_spellings(source, status, expected):
    event = parse(source, {"event_type": "on_call_end", "id": "c1", "status": status})
    assert event.data.call.status is expected
    assert event.data.call.provider_status == status


def test_call_status_table_covers_altur_and_maps_ended_to_completed():
    assert set(CALL_STATUSES) == {
        "created",
        "queued",
        "ringing",
        "in-progress",
        "forwarding",
        "ended",
        "busy",
        "no-answer",
        "failed",
    }
    assert CALL_STATUSES["ended"] is CallStatus.COMPLETED


@pytest.mark.parametrize(
    ("answered_by", "expected"),
    [
        ("human", AnsweredBy.HUMAN),
        ("machine", AnsweredBy.MACHINE),
        ("unknown", AnsweredBy.UNKNOWN),
        ("fax", AnsweredBy.UNKNOWN),
    ],
)
def test_answered_by(source, answered_by, expected):
    event = parse(source, {"event_type": "on_call_end", "id": "c1", "answered_by": answered_by})
    assert event.data.call.answered_by is expected


def test_other_transcript_senders_are_kept(source):
    event = parse(
        source,
        {
            "event_type": "on_call_end",
            "id": "c1",
            "transcript": [
                {"sent_by": "Assistant", "content": "Hola"},
                {"sent_by": "system", "content": "transferred"},
                {"sent_by": "user", "content": None},
            ],
        },
    )
    assert event.data.call.transcript == (
        TranscriptTurn(speaker="agent", text="Hola", at=None),
        TranscriptTurn(speaker="system", text="transferred", at=None),
        TranscriptTurn(speaker="contact", text="", at=None),
    )


def test_campaign_cycle_completed(source, load):
    event = parse(source, load("campaign_cycle_completed"))
    assert event.type == EventType.CAMPAIGN_CYCLE_COMPLETED == "campaign.cycle_completed"
    assert event.provider_type == "campaign.cycle_completed"
    assert event.idempotency_key == "evt_5tH9aB2nQ8vR3mZ1cP0k"
    assert event.subject == "1234"
    assert event.time == datetime(2026, 6, 8, 18, 0, tzinfo=MEXICO)
    assert event.time.utcoffset() == timedelta(hours=-6)
    assert event.data.contact is None
    assert event.data.call is None
    assert event.data.campaign == Campaign(
        id="1234",
        name="Q2 Reactivation",
        status=CampaignStatus.COOLDOWN,
        provider_status="cooldown",
        previous_status=None,
        run_id=None,
        cycle=2,
        next_cycle_at=datetime(2026, 6, 9, 9, 0, tzinfo=MEXICO),
        report_url=None,
        stats={},
    )
    assert event.data.attributes == {"project_id": "prj_8YqL3mZxR1tV0nKfH9bA", "api_version": "1.0"}


def test_campaign_cycle_completed_without_a_next_cycle(source, load):
    event = parse(source, load("campaign_cycle_completed_last"))
    assert event.type == "campaign.cycle_completed"
    assert event.idempotency_key == "evt_9pW2xK7mQ4rT1nB8cZ3h"
    assert event.subject == "1234"
    assert event.time == datetime(2026, 6, 10, 18, 0, tzinfo=MEXICO)
    assert event.data.campaign == Campaign(
        id="1234",
        name="Q2 Reactivation",
        status=CampaignStatus.COMPLETED,
        provider_status="finished",
        previous_status=None,
        cycle=3,
        next_cycle_at=None,
    )


def test_campaign_status_changed(source, load):
    event = parse(source, load("campaign_status_changed"))
    assert event.type == EventType.CAMPAIGN_STATUS_CHANGED == "campaign.status_changed"
    assert event.provider_type == "campaign.status_changed"
    assert event.idempotency_key == "evt_1bR8sD3fG6hJ9kL2mN5p"
    assert event.subject == "1234"
    assert event.time == datetime(2026, 6, 5, 9, 30, tzinfo=MEXICO)
    assert event.data.campaign == Campaign(
        id="1234",
        name="Q2 Reactivation",
        status=CampaignStatus.PAUSED,
        provider_status="inactive",
        previous_status=CampaignStatus.ACTIVE,
        cycle=None,
        next_cycle_at=None,
        stats={},
    )
    assert event.data.attributes == {"project_id": "prj_8YqL3mZxR1tV0nKfH9bA", "api_version": "1.0"}


def test_campaign_status_changed_to_finished_carries_analytics(source, load):
    event = parse(source, load("campaign_status_changed_finished"))
    assert event.type == "campaign.status_changed"
    assert event.idempotency_key == "evt_3kQpZ7tA9bN2cV1hX0sR"
    assert event.time == datetime(2026, 6, 8, 14, 23, 15, 482000, tzinfo=MEXICO)
    campaign = event.data.campaign
    assert campaign.id == "1234"
    assert campaign.name == "Q2 Reactivation"
    assert campaign.status is CampaignStatus.COMPLETED
    assert campaign.provider_status == "finished"
    assert campaign.previous_status is CampaignStatus.COOLDOWN
    assert campaign.stats == {
        "calls": 1820,
        "callsAnsweredByHuman": 945,
        "callsAnsweredByMachine": 612,
        "callsAnsweredByUnknown": 263,
        "callsAnsweredByHumanRate": 0.519,
        "callsAnsweredByMachineRate": 0.336,
        "callsAnsweredByUnknownRate": 0.144,
        "contacts": 2000,
        "contactsProcessed": 1820,
        "contactsProcessedRate": 0.91,
        "contactsFailed": 80,
        "contactsFailedRate": 0.04,
        "contactsVoicemail": 612,
        "contactsVoicemailRate": 0.306,
        "contactsAnswered": 945,
        "contactsAnsweredRate": 0.4725,
        "contactsConverted": 312,
        "contactsConvertedRate": 0.156,
    }


def test_analytics_keep_numbers_only(source):
    event = parse(
        source,
        {
            "event_id": "evt_1",
            "event_type": "campaign.status_changed",
            "data": {
                "campaign": {"id": 1, "status": "finished", "previous_status": "active"},
                "analytics": {
                    "messages": 10,
                    "deliveredRate": 0.5,
                    "channel": "whatsapp",
                    "partial": True,
                    "byDay": {"mon": 3},
                    "missing": None,
                },
            },
        },
    )
    assert event.data.campaign.stats == {"messages": 10, "deliveredRate": 0.5}


@pytest.mark.parametrize(("status", "expected"), sorted(CAMPAIGN_STATUSES.items()))
def test_every_documented_campaign_status(source, status, expected):
    event = parse(
        source,
        {
            "event_id": "evt_1",
            "event_type": "campaign.status_changed",
            "data": {"campaign": {"id": 1, "status": status, "previous_status": status}},
        },
    )
    assert event.data.campaign.status is expected
    assert event.data.campaign.previous_status is expected
    assert event.data.campaign.provider_status == status


def test_campaign_status_table():
    assert dict(CAMPAIGN_STATUSES) == {
        "pending": CampaignStatus.SCHEDULED,
        "ready": CampaignStatus.SCHEDULED,
        "active": CampaignStatus.ACTIVE,
        "inactive": CampaignStatus.PAUSED,
        "cooldown": CampaignStatus.COOLDOWN,
        "finished": CampaignStatus.COMPLETED,
    }


def test_unknown_campaign_status_is_kept(source):
    event = parse(
        source,
        {
            "event_id": "evt_1",
            "event_type": "campaign.status_changed",
            "data": {"campaign": {"id": 1, "status": "archived", "previous_status": "paused"}},
        },
    )
    assert event.data.campaign.status is CampaignStatus.UNKNOWN
    assert event.data.campaign.provider_status == "archived"
    assert event.data.campaign.previous_status is CampaignStatus.UNKNOWN


def test_campaign_event_without_event_id_is_keyed_by_its_body(source):
    body = {"event_type": "campaign.cycle_completed", "data": {"campaign": {"id": 7}}}
    first = parse(source, body)
    again = parse(source, body)
    other = parse(source, {**body, "data": {"campaign": {"id": 8}}})
    assert first.idempotency_key.startswith("sha256:")
    assert first.idempotency_key == again.idempotency_key
    assert first.idempotency_key != other.idempotency_key
    assert first.time == first.received_at


def test_unknown_event_type_is_kept(source, load):
    event = parse(source, load("campaign_archived_unknown"))
    assert event.type == "altur.campaign.archived"
    assert event.provider_type == "campaign.archived"
    assert event.idempotency_key == "evt_6yU4iO1pA8sD5fG2hJ7k"
    assert event.subject is None
    assert event.time == datetime(2026, 7, 1, 8, 0, tzinfo=MEXICO)
    assert event.data.contact is None
    assert event.data.call is None
    assert event.data.campaign is None
    assert event.data.attributes == {
        "campaign": {
            "id": 1234,
            "name": "Q2 Reactivation",
            "status": "finished",
            "previous_status": None,
        },
        "archived_by": "ops@example.com",
    }


def test_unknown_event_type_is_read_leniently(source):
    body = {"event_type": "on_call_start", "id": 5, "occurred_at": "soon", "data": [1, 2]}
    event = parse(source, body)
    assert event.type == "altur.on_call_start"
    assert event.idempotency_key == "on_call_start:5"
    assert event.subject == "5"
    assert event.time == event.received_at
    assert event.data.attributes == {}


def test_unknown_event_without_ids_is_keyed_by_its_body(source):
    first = parse(source, {"event_type": "ping"})
    assert first.type == "altur.ping"
    assert first.idempotency_key.startswith("sha256:")
    assert parse(source, {"event_type": "ping"}).idempotency_key == first.idempotency_key
    assert parse(source, {"event_type": "pong"}).idempotency_key != first.idempotency_key


def test_older_shape_with_another_type_is_kept(source):
    event = parse(source, {"type": "on_call_start", "id": "c1"})
    assert event.type == "altur.on_call_start"
    assert event.provider_type == "on_call_start"
    assert event.idempotency_key == "on_call_start:c1"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ("[1, 2]", None, "expected a JSON object, got list"),
        ('"on_call_end"', None, "expected a JSON object, got str"),
        ("{not json", None, None),
        (b"\xff\xfe{}", None, "body is not valid UTF-8 (byte 0)"),
        ("{}", "event_type", "required: the type of the event"),
        ('{"type": "outbound", "id": "c1"}', "event_type", "required: the type of the event"),
        ('{"event_type": 3}', "event_type", "expected a non-empty string, got number"),
        ('{"event_type": "  "}', "event_type", None),
        ('{"event_type": "on_call_end"}', "id", "required: the id of the call"),
        ('{"event_type": "on_call_end", "id": {"a": 1}}', "id", None),
        ('{"event_type": "on_call_end", "id": true}', "id", None),
        ('{"event_type": "on_call_end", "id": "c", "type": 1}', "type", None),
        ('{"event_type": "on_call_end", "id": "c", "status": ["ended"]}', "status", None),
        ('{"event_type": "on_call_end", "id": "c", "answered_by": 1}', "answered_by", None),
        ('{"event_type": "on_call_end", "id": "c", "end_user": []}', "end_user", None),
        ('{"event_type": "on_call_end", "id": "c", "campaign_user": "x"}', "campaign_user", None),
        ('{"event_type": "on_call_end", "id": "c", "assistant": 1}', "assistant", None),
        ('{"event_type": "on_call_end", "id": "c", "duration": "45"}', "duration", None),
        ('{"event_type": "on_call_end", "id": "c", "duration": -1}', "duration", None),
        ('{"event_type": "on_call_end", "id": "c", "duration": 4.5}', "duration", None),
        ('{"event_type": "on_call_end", "id": "c", "duration": true}', "duration", None),
        (
            '{"event_type": "on_call_end", "id": "c", "billed_duration": "x"}',
            "billed_duration",
            None,
        ),
        ('{"event_type": "on_call_end", "id": "c", "started_at": "yesterday"}', "started_at", None),
        ('{"event_type": "on_call_end", "id": "c", "ended_at": [2024]}', "ended_at", None),
        ('{"event_type": "on_call_end", "id": "c", "created_at": true}', "created_at", None),
        (
            '{"event_type": "on_call_end", "id": "c", "ended_at": "0001-01-01T00:00:00+05:00"}',
            "ended_at",
            None,
        ),
        ('{"event_type": "on_call_end", "id": "c", "recording_url": 1}', "recording_url", None),
        (
            '{"event_type": "on_call_end", "id": "c", "phone_number_to": [1]}',
            "phone_number_to",
            None,
        ),
        ('{"event_type": "on_call_end", "id": "c", "transcript": "hi"}', "transcript", None),
        ('{"event_type": "on_call_end", "id": "c", "transcript": [1]}', "transcript[0]", None),
        (
            '{"event_type": "on_call_end", "id": "c", "transcript": [{"content": "hi"}]}',
            "transcript[0].sent_by",
            None,
        ),
        (
            '{"event_type": "on_call_end", "id": "c", "transcript": [{"sent_by": "user", "content": 5}]}',
            "transcript[0].content",
            None,
        ),
        (
            '{"event_type": "on_call_end", "id": "c", "transcript": [{"sent_by": "user", "sent_at": "noon"}]}',
            "transcript[0].sent_at",
            None,
        ),
        (
            '{"event_type": "on_call_end", "id": "c", "end_user": {"phone_number": {}}}',
            "end_user.phone_number",
            None,
        ),
        (
            '{"event_type": "on_call_end", "id": "c", "end_user": {"phone_number": "+521234567890"}, '
            '"campaign_user": {"contact": [1]}}',
            "campaign_user.contact",
            None,
        ),
        (
            '{"event_type": "on_call_end", "id": "c", "end_user": {"display_name": 1}}',
            "end_user.display_name",
            None,
        ),
        (
            '{"event_type": "on_call_end", "id": "c", "end_user": {"extracted_data": []}}',
            "end_user.extracted_data",
            None,
        ),
        (
            '{"event_type": "on_call_end", "id": "c", "end_user": {"tags": "vip"}}',
            "end_user.tags",
            None,
        ),
        (
            '{"event_type": "on_call_end", "id": "c", "end_user": {"tags": ["a", 2]}}',
            "end_user.tags[1]",
            None,
        ),
        (
            '{"event_type": "on_call_end", "id": "c", "campaign_user": {"f_id": 1.5}}',
            "campaign_user.f_id",
            None,
        ),
        (
            '{"event_type": "on_call_end", "id": "c", "assistant": {"name": false}}',
            "assistant.name",
            None,
        ),
        ('{"event_type": "campaign.status_changed"}', "data", "required: the event's data object"),
        ('{"event_type": "campaign.status_changed", "data": "x"}', "data", None),
        ('{"event_type": "campaign.status_changed", "data": {}}', "data.campaign", None),
        (
            '{"event_type": "campaign.cycle_completed", "data": {"campaign": 1234}}',
            "data.campaign",
            None,
        ),
        (
            '{"event_type": "campaign.status_changed", "data": {"campaign": {"status": 1}}}',
            "data.campaign.status",
            None,
        ),
        (
            '{"event_type": "campaign.status_changed", "data": {"campaign": {"id": [1]}}}',
            "data.campaign.id",
            None,
        ),
        (
            '{"event_type": "campaign.status_changed", "data": {"campaign": {"previous_status": 2}}}',
            "data.campaign.previous_status",
            None,
        ),
        (
            '{"event_type": "campaign.cycle_completed", "data": {"campaign": {}, "cycle_iteration": "2"}}',
            "data.cycle_iteration",
            None,
        ),
        (
            '{"event_type": "campaign.cycle_completed", "data": {"campaign": {}, "next_cycle_at": "soon"}}',
            "data.next_cycle_at",
            None,
        ),
        (
            '{"event_type": "campaign.status_changed", "data": {"campaign": {}, "analytics": [1]}}',
            "data.analytics",
            None,
        ),
        (
            '{"event_type": "campaign.status_changed", "occurred_at": "June", "data": {"campaign": {}}}',
            "occurred_at",
            None,
        ),
        (
            '{"event_type": "campaign.status_changed", "event_id": {}, "data": {"campaign": {}}}',
            "event_id",
            None,
        ),
    ],
)
def test_malformed_bodies_name_the_field(source, body, field, message):
    raised = error(source, body)
    assert raised.field == field
    assert raised.status == 400
    if message is not None:
        assert raised.message == message
    assert raised.message


def test_error_messages_describe_the_wrong_type(source):
    raised = error(source, '{"event_type": "on_call_end", "id": "c", "end_user": [1]}')
    assert str(raised) == "end_user: expected an object, got array"
    raised = error(source, '{"event_type": "on_call_end", "id": "c", "duration": "45"}')
    assert str(raised) == "duration: expected a whole number, got string"
