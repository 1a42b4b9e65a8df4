"""Telling callbacks apart, statuses, idempotency keys, time zones, regions and bad fields."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from eventrouter import (
    AnsweredBy,
    CallDirection,
    CallStatus,
    CampaignStatus,
    Event,
    PayloadError,
    WebhookRequest,
)
from eventrouter_exotel import Kind, detect_kind

CALL = {
    "campaign_sid": "camp_abc123",
    "call_sid": "call_def456",
    "date_created": "2024-01-15T09:05:00+05:30",
    "date_updated": "2024-01-15T09:05:47+05:30",
    "number": "+919876543210",
    "status": "completed",
}
SCHEDULE = {
    "campaign_sid": "camp_abc123",
    "to": "+919876543210",
    "from": "0XXXXXX4890",
    "call_sids": ["call_def456", "call_ghi789"],
    "status": "failed",
    "date_updated": "2024-01-15T09:35:00+05:30",
}
CAMPAIGN = {
    "campaign_sid": "camp_abc123",
    "status": "Completed",
    "date_updated": "2024-01-15T18:00:00+05:30",
    "report_url": "https://s3.amazonaws.com/r.csv",
}


def parse(
    source: Any, payload: dict[str, Any] | bytes, content_type: str = "application/json"
) -> Event:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return source.parse(WebhookRequest(body=body, headers={"Content-Type": content_type}))


# -- telling the callbacks apart ----------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (CALL, Kind.CALL_STATUS),
        (SCHEDULE, Kind.CALL_SCHEDULE),
        (CAMPAIGN, Kind.CAMPAIGN_STATUS),
        ({"CallSid": "c", "Status": "busy"}, Kind.CALL_STATUS),
        ({"campaign_sid": "c", "status": "Failed"}, Kind.CAMPAIGN_STATUS),
        ({"campaign_sid": "c", "status": "canceled"}, Kind.CAMPAIGN_STATUS),
        ({"campaign_sid": "c", "report_url": "u", "status": "in-progress"}, Kind.CAMPAIGN_STATUS),
        # without the campaign's id it cannot be keyed: a generic callback
        ({"report_url": "u", "status": "Completed"}, None),
        # a call-level status without a call id is not a campaign's
        ({"campaign_sid": "c", "status": "completed", "number": "+919876543210"}, None),
        ({"campaign_sid": "c", "status": "in-progress"}, None),
        ({"campaign_sid": "c", "status": 3}, None),
        ({"call_sid": "c"}, None),
        ({"call_sids": ["a"]}, None),
        ({"call_sid": "c", "number": ""}, None),
        ({"call_sids": [], "to": "+91"}, None),
        ({}, None),
    ],
)
def test_detect_kind(payload, kind):
    assert detect_kind(payload) == kind


def test_unknown_shape_is_a_generic_event_keyed_by_body(make_source):
    body = b'{"sms_sid": "s1", "status": "sent"}'
    event = parse(make_source(), body)
    assert event.type == "exotel.callback"
    assert event.provider_type == "callback"
    assert event.idempotency_key == "callback:" + hashlib.sha256(body).hexdigest()
    assert event.raw == {"sms_sid": "s1", "status": "sent"}
    assert event.subject is None
    assert event.data.call is None
    assert event.data.campaign is None
    # no timestamp in the body: the time it was received
    assert event.time == event.received_at


def test_unknown_shape_with_unreadable_fields_is_still_accepted(make_source):
    event = parse(make_source(), {"date_updated": "yesterday", "call_sid": {"x": 1}})
    assert event.type == "exotel.callback"
    assert event.time == event.received_at
    assert event.raw == {"date_updated": "yesterday", "call_sid": {"x": 1}}


def test_unknown_form_shape(make_source):
    event = parse(make_source(), b"foo=bar&n=1", "application/x-www-form-urlencoded")
    assert event.type == "exotel.callback"
    assert event.raw == {"foo": "bar", "n": "1"}


# -- forcing a kind -----------------------------------------------------------------------


def test_kind_forces_call_status_without_number(make_source):
    source = make_source(kind="call_status")
    event = parse(source, {"call_sid": "c9", "status": "busy"})
    assert event.type == "call.ended"
    assert event.data.call.id == "c9"
    assert event.data.call.status is CallStatus.BUSY
    assert event.data.contact is None
    assert event.idempotency_key == "call_status:c9:busy"
    # unforced, the same body is not recognised
    assert parse(make_source(), {"call_sid": "c9", "status": "busy"}).type == "exotel.callback"


def test_kind_forces_schedule_without_to(make_source):
    event = parse(make_source(kind="call_schedule"), {"call_sids": "a,b", "status": "busy"})
    assert event.type == "call.attempts_exhausted"
    assert event.data.call.attempt_ids == ("a", "b")
    assert event.data.call.id == "b"
    assert event.data.call.status is CallStatus.BUSY
    assert event.data.contact is None
    assert event.idempotency_key == "call_schedule:::a,b"


def test_kind_forces_campaign_status_with_running_status(make_source):
    event = parse(
        make_source(kind="campaign_status"), {"campaign_sid": "c", "status": "In-Progress"}
    )
    assert event.type == "campaign.status_changed"
    assert event.data.campaign.status is CampaignStatus.ACTIVE
    assert event.data.campaign.provider_status == "In-Progress"
    assert event.idempotency_key == "campaign_status:c:active"


def test_kind_overrides_shape(make_source):
    # a call status body read as a campaign status callback, because the path says so
    event = parse(make_source(kind="campaign_status"), CALL)
    assert event.type == "campaign.completed"
    assert event.data.campaign.id == "camp_abc123"
    assert event.data.call is None


@pytest.mark.parametrize(
    ("kind", "payload", "field"),
    [
        ("call_status", SCHEDULE, "call_sid"),
        ("call_schedule", CAMPAIGN, "call_sids"),
        ("campaign_status", {"call_sid": "c", "number": "1"}, "campaign_sid"),
    ],
)
def test_forced_kind_needs_its_id(make_source, kind, payload, field):
    with pytest.raises(PayloadError) as caught:
        parse(make_source(kind=kind), payload)
    assert caught.value.field == field


# -- statuses -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("completed", CallStatus.COMPLETED),
        ("Completed", CallStatus.COMPLETED),
        ("COMPLETED", CallStatus.COMPLETED),
        ("failed", CallStatus.FAILED),
        ("busy", CallStatus.BUSY),
        ("no-answer", CallStatus.NO_ANSWER),
        ("no_answer", CallStatus.NO_ANSWER),
        ("No Answer", CallStatus.NO_ANSWER),
        ("canceled", CallStatus.CANCELED),
        ("cancelled", CallStatus.CANCELED),
        ("queued", CallStatus.QUEUED),
        ("ringing", CallStatus.RINGING),
        ("in-progress", CallStatus.IN_PROGRESS),
        ("something-new", CallStatus.UNKNOWN),
    ],
)
def test_call_statuses(make_source, status, expected):
    event = parse(make_source(), {**CALL, "status": status})
    assert event.data.call.status is expected
    assert event.data.call.provider_status == status


def test_call_without_status(make_source):
    payload = {key: value for key, value in CALL.items() if key != "status"}
    event = parse(make_source(), payload)
    assert event.data.call.status is CallStatus.UNKNOWN
    assert event.data.call.provider_status is None
    assert event.data.call.ended_at is None  # not known to be over
    assert event.idempotency_key == "call_status:call_def456:"


def test_unknown_call_status_keeps_exotel_word_in_key(make_source):
    event = parse(make_source(), {**CALL, "status": "Null-Call"})
    assert event.idempotency_key == "call_status:call_def456:null_call"


@pytest.mark.parametrize(
    ("status", "expected", "event_type"),
    [
        ("Completed", CampaignStatus.COMPLETED, "campaign.completed"),
        ("completed", CampaignStatus.COMPLETED, "campaign.completed"),
        ("Failed", CampaignStatus.FAILED, "campaign.completed"),
        ("Canceled", CampaignStatus.CANCELED, "campaign.completed"),
        ("Cancelled", CampaignStatus.CANCELED, "campaign.completed"),
        ("CANCELED", CampaignStatus.CANCELED, "campaign.completed"),
        ("Paused", CampaignStatus.PAUSED, "campaign.status_changed"),
        ("Created", CampaignStatus.SCHEDULED, "campaign.status_changed"),
        ("Archived", CampaignStatus.UNKNOWN, "campaign.status_changed"),
    ],
)
def test_campaign_statuses(make_source, status, expected, event_type):
    event = parse(make_source(), {**CAMPAIGN, "status": status})
    assert event.type == event_type
    assert event.data.campaign.status is expected
    assert event.data.campaign.provider_status == status


def test_schedule_status_is_the_last_attempts(make_source):
    event = parse(make_source(), {**SCHEDULE, "status": "no-answer"})
    assert event.data.call.status is CallStatus.NO_ANSWER
    assert event.data.call.id == "call_ghi789"


@pytest.mark.parametrize(
    ("direction", "expected"),
    [
        ("inbound", CallDirection.INBOUND),
        ("outbound-api", CallDirection.OUTBOUND),
        ("outbound-dial", CallDirection.OUTBOUND),
        ("sideways", None),
    ],
)
def test_voice_directions(make_source, direction, expected):
    event = parse(make_source(), {"CallSid": "c", "Status": "completed", "Direction": direction})
    assert event.data.call.direction == expected


@pytest.mark.parametrize(
    ("legs", "expected"),
    [
        ([{"AnsweredBy": "Human"}], AnsweredBy.HUMAN),
        ([{"AnsweredBy": "NA"}, {"AnsweredBy": "MACHINE"}], AnsweredBy.MACHINE),
        ([{"AnsweredBy": "HUMAN"}, {"AnsweredBy": "NA"}], None),
        ([{"AnsweredBy": "Robot"}], AnsweredBy.UNKNOWN),
        ('[{"AnsweredBy": "Human"}]', AnsweredBy.HUMAN),
        ("not legs", None),
        ("[broken", None),
        ([1, 2], None),
        ({"AnsweredBy": "Human"}, None),
    ],
)
def test_answered_by_from_the_last_leg(make_source, legs, expected):
    event = parse(make_source(), {"CallSid": "c", "Status": "completed", "Legs": legs})
    assert event.data.call.answered_by == expected


# -- idempotency ---------------------------------------------------------------------------


def test_same_callback_twice_has_one_key(make_source):
    source = make_source()
    assert parse(source, CALL).idempotency_key == parse(source, dict(CALL)).idempotency_key


def test_a_later_status_of_the_same_call_has_another_key(make_source):
    source = make_source()
    first = parse(source, {**CALL, "status": "no-answer"})
    second = parse(source, {**CALL, "status": "completed"})
    assert first.idempotency_key != second.idempotency_key


def test_status_spellings_share_a_key(make_source):
    source = make_source()
    keys = {
        parse(source, {**CALL, "status": s}).idempotency_key for s in ("no-answer", "no_answer")
    }
    assert keys == {"call_status:call_def456:no_answer"}
    keys = {
        parse(source, {**CAMPAIGN, "status": s}).idempotency_key
        for s in ("Completed", "completed", "COMPLETED")
    }
    assert keys == {"campaign_status:camp_abc123:completed"}


def test_schedule_key_includes_attempts(make_source):
    source = make_source()
    one = parse(source, SCHEDULE)
    more = parse(source, {**SCHEDULE, "call_sids": ["call_def456", "call_ghi789", "call_x"]})
    other_number = parse(source, {**SCHEDULE, "to": "+919812345678"})
    keys = {one.idempotency_key, more.idempotency_key, other_number.idempotency_key}
    assert len(keys) == 3
    assert one.idempotency_key == "call_schedule:camp_abc123:+919876543210:call_def456,call_ghi789"


def test_campaign_key_is_campaign_and_status(make_source):
    source = make_source()
    done = parse(source, CAMPAIGN)
    failed = parse(source, {**CAMPAIGN, "status": "Failed"})
    assert done.idempotency_key == "campaign_status:camp_abc123:completed"
    assert failed.idempotency_key == "campaign_status:camp_abc123:failed"


# -- time zones, regions, numbers -----------------------------------------------------------


def test_naive_timestamps_in_the_configured_time_zone(make_source):
    payload = {**CALL, "date_created": "2024-01-15 09:05:00", "date_updated": "2024-01-15 09:05:47"}
    india = parse(make_source(), payload)
    assert india.time == datetime(2024, 1, 15, 3, 35, 47, tzinfo=UTC)
    assert india.time.utcoffset() == timedelta(hours=5, minutes=30)
    london = parse(make_source(time_zone="Europe/London"), payload)
    assert london.time == datetime(2024, 1, 15, 9, 5, 47, tzinfo=ZoneInfo("Europe/London"))
    assert london.time.utcoffset() == timedelta(0)
    assert london.data.call.started_at == datetime(2024, 1, 15, 9, 5, tzinfo=UTC)


def test_offset_timestamps_ignore_the_time_zone_option(make_source):
    event = parse(make_source(time_zone="America/New_York"), CALL)
    assert event.time.utcoffset() == timedelta(hours=5, minutes=30)
    assert event.time == datetime(
        2024, 1, 15, 9, 5, 47, tzinfo=timezone(timedelta(hours=5, minutes=30))
    )


def test_z_and_unix_timestamps(make_source):
    event = parse(make_source(), {**CALL, "date_updated": "2024-01-15T03:35:47Z"})
    assert event.time == datetime(2024, 1, 15, 3, 35, 47, tzinfo=UTC)
    event = parse(make_source(), {**CALL, "date_updated": 1705289747})
    assert event.time == datetime(2024, 1, 15, 3, 35, 47, tzinfo=UTC)


def test_phone_region_option(make_source):
    payload = {**CALL, "number": "2025550123"}
    assert parse(make_source(), payload).data.contact.phone == "+912025550123"
    us = parse(make_source(phone_region="us"), payload)
    assert us.data.contact.phone == "+12025550123"
    assert us.data.call.to_number == "+12025550123"


def test_numbers_that_are_not_numbers(make_source):
    event = parse(make_source(), {**CALL, "number": "unknown"})
    assert event.data.contact is None
    assert event.data.call.to_number == "unknown"
    event = parse(make_source(), {**SCHEDULE, "to": "+000000000000"})
    assert event.data.contact is None
    assert event.data.call.to_number == "+000000000000"


def test_numeric_json_values(make_source):
    event = parse(make_source(), {**CALL, "call_sid": 12345, "number": 919876543210})
    assert event.data.call.id == "12345"
    assert event.data.contact.phone == "+919876543210"


@pytest.mark.parametrize(
    ("value", "expected"), [(47, 47), ("47", 47), (" 47 ", 47), (47.0, 47), ("46.6", 47), (0, 0)]
)
def test_durations(make_source, value, expected):
    event = parse(make_source(), {**CALL, "duration": value})
    assert event.data.call.duration_seconds == expected


@pytest.mark.parametrize("value", ["", "null", "None"])
def test_missing_recording_urls(make_source, value):
    event = parse(make_source(), {"CallSid": "c", "Status": "completed", "RecordingUrl": value})
    assert event.data.call.recording_url is None


# -- malformed fields of recognised callbacks ---------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({**CALL, "call_sid": {"id": 1}}, "call_sid"),
        ({**CALL, "call_sid": True}, "call_sid"),
        ({**CALL, "status": ["a", "b"]}, "status"),
        ({**CALL, "date_updated": "yesterday"}, "date_updated"),
        ({**CALL, "date_created": True}, "date_created"),
        ({**CALL, "date_updated": "0001-01-01 00:00:00"}, "date_updated"),
        ({**CALL, "duration": "long"}, "duration"),
        ({**CALL, "duration": -1}, "duration"),
        ({**CALL, "duration": True}, "duration"),
        ({**CALL, "duration": [1]}, "duration"),
        ({**CALL, "number": ["+91"]}, "number"),
        ({**SCHEDULE, "call_sids": {"a": 1}}, "call_sids"),
        ({**SCHEDULE, "to": {"n": 1}}, "to"),
        ({**CAMPAIGN, "report_url": ["u"]}, "report_url"),
        ({**CAMPAIGN, "date_updated": "2024-13-45"}, "date_updated"),
    ],
)
def test_malformed_fields_name_the_field(make_source, payload, field):
    with pytest.raises(PayloadError) as caught:
        parse(make_source(), payload)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("event_type", "expected"),
    [
        ("terminal", "call.ended"),
        ("Terminal", "call.ended"),
        ("answered", "exotel.call.answered"),
        ("Ringing", "exotel.call.ringing"),
        ("call answered!", "exotel.call.call_answered"),
        ("!!!", "exotel.call.unknown"),
    ],
)
def test_voice_event_types(make_source, event_type, expected):
    event = parse(make_source(), {"CallSid": "c", "Status": "completed", "EventType": event_type})
    assert event.type == expected


@pytest.mark.parametrize("value", ["1e400", 10**30 * 10**300, "inf", "-0.5"])
def test_out_of_range_durations(make_source, value):
    with pytest.raises(PayloadError) as caught:
        parse(make_source(), {**CALL, "duration": value})
    assert caught.value.field == "duration"


def test_non_finite_duration(make_source):
    # NaN is not JSON: the core's parser refuses the body before the plugin reads it
    with pytest.raises(PayloadError, match="NaN is not valid JSON"):
        parse(make_source(), b'{"call_sid": "c", "number": "1", "duration": NaN}')
    # 1e999 is JSON, but reads as infinity: the plugin refuses the field
    with pytest.raises(PayloadError) as caught:
        parse(make_source(), b'{"call_sid": "c", "number": "1", "duration": 1e999}')
    assert caught.value.field == "duration"
