"""Bodies Pelcro could not have sent: a PayloadError (400) naming the field, never echoing values."""

from __future__ import annotations

import copy
import json

import pytest

from eventrouter import PayloadError, WebhookRequest
from eventrouter_pelcro import parse_webhook

MARKER = "do-not-echo-this-value"
TIMESTAMP = "expected Unix seconds or an ISO 8601 timestamp"


def _envelope(**changes):
    payload = {"type": "subscription.updated", "id": "evt_x", "created": 1704067200, "data": {}}
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not ...}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "body is not valid JSON"),
        (b"not json", "body is not valid JSON"),
        (b"\xff\xfe{}", "body is not valid UTF-8"),
        (b"[]", "expected a JSON object, got list"),
        (b'"evt_1"', "expected a JSON object, got str"),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_body_that_is_not_a_json_object(body, message):
    with pytest.raises(PayloadError) as info:
        parse_webhook(body)
    assert message in info.value.message
    assert info.value.field is None
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"type": ...}, "type", "expected a non-empty string, got nothing"),
        ({"type": ""}, "type", "expected a non-empty string, got string"),
        ({"type": 5}, "type", "expected a non-empty string, got number"),
        ({"type": {"x": MARKER}}, "type", "expected a non-empty string, got object"),
        ({"type": "x" * 201}, "type", "longer than 200 characters"),
        (
            {"type": "subscription.created\nforged log line"},
            "type",
            "expected an event name such as subscription.created",
        ),
        (
            {"type": "subscription created"},
            "type",
            "expected an event name such as subscription.created",
        ),
        ({"id": "evt_1\r\n"}, "id", "expected an event id such as evt_..."),
        ({"id": ...}, "id", 'expected a non-empty string such as "evt_...", got nothing'),
        ({"id": ""}, "id", 'expected a non-empty string such as "evt_...", got string'),
        ({"id": True}, "id", 'expected a non-empty string such as "evt_...", got boolean'),
        ({"id": [MARKER]}, "id", 'expected a non-empty string such as "evt_...", got array'),
        ({"id": "e" * 256}, "id", "longer than 255 characters"),
        ({"created": ...}, "created", "required timestamp is missing"),
        ({"created": None}, "created", "required timestamp is missing"),
        ({"created": ""}, "created", "required timestamp is missing"),
        ({"created": True}, "created", f"{TIMESTAMP}, got boolean"),
        ({"created": 10**30}, "created", "Unix timestamp is out of range"),
        ({"created": -(10**15)}, "created", "Unix timestamp is out of range"),
        ({"created": {"at": MARKER}}, "created", f"{TIMESTAMP}, got object"),
        ({"created": [MARKER]}, "created", f"{TIMESTAMP}, got array"),
        ({"created": MARKER}, "created", f"{TIMESTAMP}, got string"),
        # digits int() refuses once raised ValueError: a 503 and a traceback, not a 400
        ({"created": "²"}, "created", f"{TIMESTAMP}, got string"),
        ({"created": "9" * 5000}, "created", f"{TIMESTAMP}, got string"),
    ],
)
def test_bad_envelope(changes, field, message):
    with pytest.raises(PayloadError) as info:
        parse_webhook(json.dumps(_envelope(**changes)).encode())
    assert info.value.field == field
    assert info.value.message == message
    assert MARKER not in str(info.value)


def test_created_as_digits_or_iso_is_accepted():
    assert parse_webhook(json.dumps(_envelope(created="1704067200")).encode()).time.year == 2024
    parsed = parse_webhook(json.dumps(_envelope(created="2024-01-01T00:00:00Z")).encode())
    assert parsed.time.isoformat() == "2024-01-01T00:00:00+00:00"


def test_numeric_id_is_accepted_as_text():
    assert parse_webhook(json.dumps(_envelope(id=42)).encode()).idempotency_key == "42"


def _mutate(payload, path, value):
    node = payload
    for part in path[:-1]:
        node = node[part]
    if value is ...:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return payload


TRIGGERED_CASES = [
    (("data",), ..., "data", "required object is missing"),
    (("data",), [MARKER], "data", "expected an object, got array"),
    (("data", "campaign"), ..., "data.campaign", "required object is missing"),
    (("data", "campaign"), MARKER, "data.campaign", "expected an object, got string"),
    (("data", "campaign", "id"), {"v": MARKER}, "data.campaign.id", "expected a string or number, got object"),
    (("data", "campaign", "name"), [MARKER], "data.campaign.name", "expected a string or number, got array"),
    (("data", "campaign", "plan"), MARKER, "data.campaign.plan", "expected an object, got string"),
    (("data", "campaign", "coupon"), 5, "data.campaign.coupon", "expected an object, got number"),
    (("data", "subscription"), MARKER, "data.subscription", "expected an object, got string"),
    (("data", "subscription", "id"), True, "data.subscription.id", "expected a string or number, got boolean"),
    (("data", "subscription", "plan"), [1], "data.subscription.plan", "expected an object, got array"),
    (("data", "subscription", "address"), MARKER, "data.subscription.address", "expected an object, got string"),
    (("data", "subscription", "user"), MARKER, "data.subscription.user", "expected an object, got string"),
    (("data", "subscription", "user", "email"), [MARKER], "data.subscription.user.email", "expected a string or number, got array"),
    (("data", "subscription", "user", "first_name"), {"x": 1}, "data.subscription.user.first_name", "expected a string or number, got object"),
    (("data", "subscription", "user", "id"), False, "data.subscription.user.id", "expected a string or number, got boolean"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "value", "field", "message"), TRIGGERED_CASES)
def test_bad_campaign_triggered(fixture_json, path, value, field, message):
    payload = _mutate(copy.deepcopy(fixture_json("campaign_triggered.json")), path, value)
    with pytest.raises(PayloadError) as info:
        parse_webhook(json.dumps(payload).encode())
    assert (info.value.field, info.value.message) == (field, message)
    text = str(info.value)
    assert MARKER not in text
    assert "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" not in text  # the seed's magic_link_token


def test_bad_user_beside_the_subscription(fixture_json):
    payload = fixture_json("campaign_triggered.json")
    del payload["data"]["subscription"]["user"]
    payload["data"]["customer"] = "someone"
    with pytest.raises(PayloadError) as info:
        parse_webhook(json.dumps(payload).encode())
    assert info.value.field == "data.customer"


RUN_CASES = [
    ("campaign_run_completed.json", ("data",), ..., "data", "required object is missing"),
    ("campaign_run_completed.json", ("data",), 5, "data", "expected an object, got number"),
    ("campaign_run_completed.json", ("data", "campaign"), MARKER, "data.campaign", "expected an object, got string"),
    ("campaign_run_completed.json", ("data", "campaign", "run"), ..., "data.campaign.run", "required object is missing"),
    ("campaign_run_completed.json", ("data", "campaign", "run"), [MARKER], "data.campaign.run", "expected an object, got array"),
    ("campaign_run_completed.json", ("data", "campaign", "run", "download_link"), 5, "data.campaign.run.download_link", "expected a URL string, got number"),
    ("campaign_run_completed.json", ("data", "campaign", "run", "id"), {"v": MARKER}, "data.campaign.run.id", "expected a string or number, got object"),
    ("campaign_run_completed.json", ("data", "campaign", "id"), [MARKER], "data.campaign.id", "expected a string or number, got array"),
    ("campaign_run_completed_flat.json", ("data", "run"), ..., "data.run", "required object is missing"),
    ("campaign_run_completed_flat.json", ("data", "run"), MARKER, "data.run", "expected an object, got string"),
    ("campaign_run_completed_flat.json", ("data", "run", "download_link"), {"u": MARKER}, "data.run.download_link", "expected a URL string, got object"),
    ("campaign_run_completed_flat.json", ("data", "name"), [MARKER], "data.name", "expected a string or number, got array"),
]  # fmt: skip


@pytest.mark.parametrize(("fixture", "path", "value", "field", "message"), RUN_CASES)
def test_bad_run_completed(fixture_json, fixture, path, value, field, message):
    payload = _mutate(copy.deepcopy(fixture_json(fixture)), path, value)
    with pytest.raises(PayloadError) as info:
        parse_webhook(json.dumps(payload).encode())
    assert (info.value.field, info.value.message) == (field, message)
    assert MARKER not in str(info.value)


def test_source_parse_raises_the_same_error(source):
    with pytest.raises(PayloadError) as info:
        source.parse(WebhookRequest(body=b'{"type": "campaign.triggered", "id": "evt_1"}'))
    assert info.value.field == "created"
