"""Every fixture payload (seed page, docs/provider-reference.md, form variants) normalised field by field."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import pytest

from eventrouter import (
    AnsweredBy,
    Call,
    CallDirection,
    CallStatus,
    Campaign,
    CampaignStatus,
    Contact,
    EventData,
)
from eventrouter_exotel.body import decode_form

IST = timezone(timedelta(hours=5, minutes=30))
KOLKATA = ZoneInfo("Asia/Kolkata")
FIXTURES = Path(__file__).parent / "fixtures"


def ist(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=IST)


def kolkata(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=KOLKATA)


SEED_CALL = EventData(
    contact=Contact(phone="+919876543210"),
    call=Call(
        id="call_def456",
        direction=CallDirection.OUTBOUND,
        status=CallStatus.COMPLETED,
        provider_status="completed",
        started_at=ist(2024, 1, 15, 9, 5, 0),
        ended_at=ist(2024, 1, 15, 9, 5, 47),
        to_number="+919876543210",
    ),
    campaign=Campaign(id="camp_abc123"),
)

SEED_SCHEDULE = EventData(
    contact=Contact(phone="+919876543210"),
    call=Call(
        id="call_jkl012",
        direction=CallDirection.OUTBOUND,
        status=CallStatus.FAILED,
        provider_status="failed",
        ended_at=ist(2024, 1, 15, 9, 35, 0),
        attempt_ids=("call_def456", "call_ghi789", "call_jkl012"),
        from_number="0XXXXXX4890",
        to_number="+919876543210",
    ),
    campaign=Campaign(id="camp_abc123"),
)
SEED_SCHEDULE_KEY = "call_schedule:camp_abc123:+919876543210:call_def456,call_ghi789,call_jkl012"

SEED_CAMPAIGN = EventData(
    campaign=Campaign(
        id="camp_abc123",
        status=CampaignStatus.COMPLETED,
        provider_status="Completed",
        report_url="https://s3.amazonaws.com/.../campaign_report.csv",
    )
)


def call_status(
    call_id: str,
    status: CallStatus,
    provider: str,
    created: datetime,
    updated: datetime,
    *,
    number: str = "+919876543210",
) -> EventData:
    return EventData(
        contact=Contact(phone=number),
        call=Call(
            id=call_id,
            direction=CallDirection.OUTBOUND,
            status=status,
            provider_status=provider,
            started_at=created,
            ended_at=updated,
            to_number=number,
        ),
        campaign=Campaign(id="camp_abc123"),
    )


def campaign(
    campaign_id: str, status: CampaignStatus, provider: str, report_url: str | None = None
) -> EventData:
    return EventData(
        campaign=Campaign(
            id=campaign_id, status=status, provider_status=provider, report_url=report_url
        )
    )


# fixture -> (type, provider_type, idempotency key, time, subject, data)
EXPECTED: dict[str, tuple[str, str, str, datetime | None, str | None, EventData]] = {
    "call_status_completed.json": (
        "call.ended",
        "call_status",
        "call_status:call_def456:completed",
        ist(2024, 1, 15, 9, 5, 47),
        "call_def456",
        SEED_CALL,
    ),
    "call_status.form": (
        "call.ended",
        "call_status",
        "call_status:call_def456:completed",
        ist(2024, 1, 15, 9, 5, 47),
        "call_def456",
        SEED_CALL,
    ),
    "call_status_failed.json": (
        "call.ended",
        "call_status",
        "call_status:call_ghi789:failed",
        ist(2024, 1, 15, 9, 15, 5),
        "call_ghi789",
        call_status(
            "call_ghi789",
            CallStatus.FAILED,
            "failed",
            ist(2024, 1, 15, 9, 15, 0),
            ist(2024, 1, 15, 9, 15, 5),
        ),
    ),
    "call_status_busy.json": (
        "call.ended",
        "call_status",
        "call_status:call_jkl012:busy",
        ist(2024, 1, 15, 9, 25, 9),
        "call_jkl012",
        call_status(
            "call_jkl012",
            CallStatus.BUSY,
            "busy",
            ist(2024, 1, 15, 9, 25, 0),
            ist(2024, 1, 15, 9, 25, 9),
        ),
    ),
    "call_status_no_answer_hyphen.json": (
        "call.ended",
        "call_status",
        "call_status:call_mno345:no_answer",
        ist(2024, 1, 15, 9, 35, 45),
        "call_mno345",
        call_status(
            "call_mno345",
            CallStatus.NO_ANSWER,
            "no-answer",
            ist(2024, 1, 15, 9, 35, 0),
            ist(2024, 1, 15, 9, 35, 45),
        ),
    ),
    "call_status_no_answer_underscore.json": (
        "call.ended",
        "call_status",
        "call_status:call_pqr678:no_answer",
        ist(2024, 1, 15, 9, 45, 45),
        "call_pqr678",
        call_status(
            "call_pqr678",
            CallStatus.NO_ANSWER,
            "no_answer",
            ist(2024, 1, 15, 9, 45, 0),
            ist(2024, 1, 15, 9, 45, 45),
        ),
    ),
    "call_status_capitalised.json": (
        "call.ended",
        "call_status",
        "call_status:call_stu901:completed",
        ist(2024, 1, 15, 10, 6, 10),
        "call_stu901",
        call_status(
            "call_stu901",
            CallStatus.COMPLETED,
            "Completed",
            ist(2024, 1, 15, 10, 5, 0),
            ist(2024, 1, 15, 10, 6, 10),
        ),
    ),
    "call_status_canceled.json": (
        "call.ended",
        "call_status",
        "call_status:call_vwx234:canceled",
        ist(2024, 1, 15, 10, 15, 1),
        "call_vwx234",
        call_status(
            "call_vwx234",
            CallStatus.CANCELED,
            "canceled",
            ist(2024, 1, 15, 10, 15, 0),
            ist(2024, 1, 15, 10, 15, 1),
        ),
    ),
    "call_status_naive_timestamps.json": (
        "call.ended",
        "call_status",
        "call_status:call_naive001:completed",
        kolkata(2024, 1, 15, 9, 5, 47),
        "call_naive001",
        EventData(
            contact=Contact(phone="+919876543210"),
            call=Call(
                id="call_naive001",
                direction=CallDirection.OUTBOUND,
                status=CallStatus.COMPLETED,
                provider_status="completed",
                started_at=kolkata(2024, 1, 15, 9, 5, 0),
                ended_at=kolkata(2024, 1, 15, 9, 5, 47),
                duration_seconds=41,
                recording_url="https://recordings.exotel.com/exotelrecordings/acme/call_naive001.mp3",
                to_number="+919876543210",
            ),
            campaign=Campaign(id="camp_abc123"),
        ),
    ),
    "call_status_unescaped_plus.form": (
        "call.ended",
        "call_status",
        "call_status:call_plus999:no_answer",
        kolkata(2024, 1, 15, 9, 5, 47),
        "call_plus999",
        call_status(
            "call_plus999",
            CallStatus.NO_ANSWER,
            "No-Answer",
            kolkata(2024, 1, 15, 9, 5, 0),
            kolkata(2024, 1, 15, 9, 5, 47),
        ),
    ),
    "voice_status_callback.form": (
        "call.ended",
        "call_status",
        "call_status:80bfbec2d78bbbf10fb851f4fa165211:completed",
        kolkata(2024, 1, 15, 14, 30, 45),
        "80bfbec2d78bbbf10fb851f4fa165211",
        EventData(
            call=Call(
                id="80bfbec2d78bbbf10fb851f4fa165211",
                status=CallStatus.COMPLETED,
                provider_status="completed",
                ended_at=kolkata(2024, 1, 15, 14, 30, 45),
                recording_url="https://s3-ap-southeast-1.amazonaws.com/recordings/abc123.mp3",
            )
        ),
    ),
    "voice_status_callback_terminal.json": (
        "call.ended",
        "call_status",
        "call_status:80bfbec2d78bbbf10fb851f4fa165211:completed:terminal",
        kolkata(2024, 1, 15, 14, 30, 45),
        "80bfbec2d78bbbf10fb851f4fa165211",
        EventData(
            contact=Contact(phone="+919123456789"),
            call=Call(
                id="80bfbec2d78bbbf10fb851f4fa165211",
                direction=CallDirection.OUTBOUND,
                status=CallStatus.COMPLETED,
                provider_status="completed",
                answered_by=AnsweredBy.HUMAN,
                started_at=kolkata(2024, 1, 15, 14, 25, 12),
                ended_at=kolkata(2024, 1, 15, 14, 30, 45),
                duration_seconds=320,
                recording_url="https://s3-ap-southeast-1.amazonaws.com/recordings/abc123.mp3",
                from_number="+919876543210",
                to_number="+919123456789",
            ),
            attributes={
                "event_type": "terminal",
                "custom_field": "order_12345",
                "phone_number_sid": "0XXXXXX4890",
            },
        ),
    ),
    "voice_status_callback_answered.json": (
        "exotel.call.answered",
        "call_status",
        "call_status:80bfbec2d78bbbf10fb851f4fa165211:in_progress:answered",
        kolkata(2024, 1, 15, 14, 25, 20),
        "80bfbec2d78bbbf10fb851f4fa165211",
        EventData(
            contact=Contact(phone="+919876543210"),
            call=Call(
                id="80bfbec2d78bbbf10fb851f4fa165211",
                direction=CallDirection.INBOUND,
                status=CallStatus.IN_PROGRESS,
                provider_status="in-progress",
                started_at=kolkata(2024, 1, 15, 14, 25, 10),
                from_number="+919876543210",
                to_number="+919123456789",
            ),
            attributes={"event_type": "answered"},
        ),
    ),
    "call_schedule_failed.json": (
        "call.attempts_exhausted",
        "call_schedule",
        SEED_SCHEDULE_KEY,
        ist(2024, 1, 15, 9, 35, 0),
        "+919876543210",
        SEED_SCHEDULE,
    ),
    "call_schedule_repeated.form": (
        "call.attempts_exhausted",
        "call_schedule",
        SEED_SCHEDULE_KEY,
        ist(2024, 1, 15, 9, 35, 0),
        "+919876543210",
        SEED_SCHEDULE,
    ),
    "call_schedule_json_string.form": (
        "call.attempts_exhausted",
        "call_schedule",
        SEED_SCHEDULE_KEY,
        ist(2024, 1, 15, 9, 35, 0),
        "+919876543210",
        SEED_SCHEDULE,
    ),
    "call_schedule_comma.form": (
        "call.attempts_exhausted",
        "call_schedule",
        SEED_SCHEDULE_KEY,
        ist(2024, 1, 15, 9, 35, 0),
        "+919876543210",
        SEED_SCHEDULE,
    ),
    "call_schedule_brackets.form": (
        "call.attempts_exhausted",
        "call_schedule",
        SEED_SCHEDULE_KEY,
        ist(2024, 1, 15, 9, 35, 0),
        "+919876543210",
        SEED_SCHEDULE,
    ),
    "call_schedule_completed.json": (
        "call.attempts_exhausted",
        "call_schedule",
        "call_schedule:camp_abc123:+919812345678:call_aaa111,call_bbb222",
        ist(2024, 1, 15, 9, 20, 31),
        "+919812345678",
        EventData(
            contact=Contact(phone="+919812345678"),
            call=Call(
                id="call_bbb222",
                direction=CallDirection.OUTBOUND,
                status=CallStatus.COMPLETED,
                provider_status="completed",
                ended_at=ist(2024, 1, 15, 9, 20, 31),
                attempt_ids=("call_aaa111", "call_bbb222"),
                from_number="+918047091234",
                to_number="+919812345678",
            ),
            campaign=Campaign(id="camp_abc123"),
        ),
    ),
    "campaign_status_completed.json": (
        "campaign.completed",
        "campaign_status",
        "campaign_status:camp_abc123:completed",
        ist(2024, 1, 15, 18, 0, 0),
        "camp_abc123",
        SEED_CAMPAIGN,
    ),
    "campaign_status.form": (
        "campaign.completed",
        "campaign_status",
        "campaign_status:camp_abc123:completed",
        ist(2024, 1, 15, 18, 0, 0),
        "camp_abc123",
        SEED_CAMPAIGN,
    ),
    "campaign_status_completed_lowercase.json": (
        "campaign.completed",
        "campaign_status",
        "campaign_status:camp_abc123:completed",
        ist(2024, 1, 15, 18, 0, 0),
        "camp_abc123",
        campaign(
            "camp_abc123",
            CampaignStatus.COMPLETED,
            "completed",
            "https://s3.amazonaws.com/.../campaign_report.csv",
        ),
    ),
    "campaign_status_failed.json": (
        "campaign.completed",
        "campaign_status",
        "campaign_status:camp_def456:failed",
        ist(2024, 1, 14, 16, 31, 10),
        "camp_def456",
        campaign("camp_def456", CampaignStatus.FAILED, "Failed"),
    ),
    "campaign_status_canceled.json": (
        "campaign.completed",
        "campaign_status",
        "campaign_status:camp_ghi789:canceled",
        ist(2024, 1, 14, 17, 0, 0),
        "camp_ghi789",
        campaign(
            "camp_ghi789",
            CampaignStatus.CANCELED,
            "Canceled",
            "https://s3.amazonaws.com/reports/camp_ghi789.csv",
        ),
    ),
    "campaign_status_cancelled.json": (
        "campaign.completed",
        "campaign_status",
        "campaign_status:camp_ghi789:canceled",
        kolkata(2024, 1, 14, 17, 0, 0),
        "camp_ghi789",
        campaign("camp_ghi789", CampaignStatus.CANCELED, "Cancelled"),
    ),
    "unknown_shape.json": (
        "exotel.callback",
        "callback",
        "callback:" + hashlib.sha256((FIXTURES / "unknown_shape.json").read_bytes()).hexdigest(),
        ist(2024, 1, 15, 11, 0, 0),
        None,
        EventData(),
    ),
}


def test_every_fixture_has_expectations():
    assert sorted(path.name for path in FIXTURES.iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_normalised(name, make_source, request_for):
    event_type, provider_type, key, time, subject, data = EXPECTED[name]
    event = make_source().parse(request_for(name))
    assert event.type == event_type
    assert event.provider == "exotel"
    assert event.provider_type == provider_type
    assert event.idempotency_key == key
    assert event.source == "exotel"
    assert event.time == time
    assert event.time.utcoffset() == time.utcoffset()
    assert event.subject == subject
    assert event.sensitive == ()
    assert event.data.contact == data.contact
    assert event.data.campaign == data.campaign
    assert event.data.attributes == data.attributes
    if data.call is None:
        assert event.data.call is None
    else:
        for attribute in attrs.fields(Call):
            name_ = attribute.name
            assert getattr(event.data.call, name_) == getattr(data.call, name_), name_
    assert event.data == data
    # what Exotel sent stays available, untouched, and survives the JSON round trip
    assert event.raw == expected_raw(name)
    assert type(event).from_json(event.to_json()) == event


def expected_raw(name: str) -> dict[str, Any]:
    text = (FIXTURES / name).read_text()
    if name.endswith(".json"):
        return json.loads(text)
    return decode_form(text.encode())


def test_offsets_are_kept(make_source, request_for):
    event = make_source().parse(request_for("call_status_completed.json"))
    assert event.data.call.started_at.isoformat() == "2024-01-15T09:05:00+05:30"
    assert event.time.isoformat() == "2024-01-15T09:05:47+05:30"


def test_form_raw_keeps_lists(make_source, request_for):
    for name in ("call_schedule_repeated.form", "call_schedule_brackets.form"):
        event = make_source().parse(request_for(name))
        assert event.raw["call_sids"] == ["call_def456", "call_ghi789", "call_jkl012"]
    event = make_source().parse(request_for("call_schedule_comma.form"))
    assert event.raw["call_sids"] == "call_def456,call_ghi789, call_jkl012"


def test_json_and_form_variants_agree(make_source, request_for):
    source = make_source()
    pairs = [
        ("call_status_completed.json", "call_status.form"),
        ("call_schedule_failed.json", "call_schedule_repeated.form"),
        ("call_schedule_failed.json", "call_schedule_json_string.form"),
        ("call_schedule_failed.json", "call_schedule_comma.form"),
        ("call_schedule_failed.json", "call_schedule_brackets.form"),
        ("campaign_status_completed.json", "campaign_status.form"),
    ]
    for json_name, form_name in pairs:
        from_json = source.parse(request_for(json_name))
        from_form = source.parse(request_for(form_name))
        assert from_form.data == from_json.data, form_name
        assert from_form.idempotency_key == from_json.idempotency_key, form_name
        assert from_form.type == from_json.type, form_name
        assert from_form.time == from_json.time, form_name
