"""Property tests: whatever arrives, the source raises only PayloadError or AuthenticationError."""

from __future__ import annotations

import ipaddress
import json
from typing import Any
from urllib.parse import urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventrouter import AuthenticationError, Event, PayloadError, WebhookRequest
from eventrouter.testing import structure_options
from eventrouter_exotel import ExotelOptions, ExotelSource

TOKEN = "tok_3q9VnD8xKp2LmW7rTz5Y"
BASIC_HEADER = "Basic ZXhvdGVsOnBhNTV3b3JkLWxvbmc="  # exotel:pa55word-long
KEYS = [
    "campaign_sid", "call_sid", "call_sids", "number", "to", "from", "status", "report_url",
    "date_created", "date_updated", "duration", "recording_url", "CallSid", "Status", "To", "From",
    "DateUpdated", "DateCreated", "StartTime", "EndTime", "ConversationDuration", "Direction",
    "EventType", "Legs", "RecordingUrl", "CustomField",
]  # fmt: skip
CONTENT_TYPES = [
    "application/json",
    "application/x-www-form-urlencoded",
    "text/plain",
    "",
    "application/xml",
    "application/json; charset=utf-8",
]
STATUSES = ["completed", "Completed", "failed", "Failed", "busy", "no-answer", "Canceled", "x"]
TIMES = ["2024-01-15T09:05:00+05:30", "2024-01-15 09:05:00", "0001-01-01 00:00:00", "9999-12-31T23:59:59-12:00", "soon"]  # fmt: skip

SOURCES = [
    ExotelSource("exotel", structure_options({"tokens": [TOKEN], **options}, ExotelOptions))
    for options in (
        {},
        {"kind": "call_status"},
        {"kind": "call_schedule"},
        {"kind": "campaign_status"},
    )
]
GUARDED = ExotelSource(
    "exotel",
    structure_options(
        {
            "tokens": [TOKEN],
            "basic_auth": ["exotel:pa55word-long"],
            "allowed_networks": ["203.0.113.0/24", "2001:db8::/32"],
        },
        ExotelOptions,
    ),
)

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    scalars | st.sampled_from(STATUSES + TIMES),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
payloads = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=10), json_values, max_size=8)
form_values = st.text(max_size=30) | st.sampled_from(STATUSES + TIMES + ["a,b", '["a","b"]'])
forms = st.lists(st.tuples(st.sampled_from(KEYS) | st.text(max_size=10), form_values), max_size=8)
headers = st.dictionaries(
    st.sampled_from(["Content-Type", "Authorization", "X-Forwarded-For", "X-Other"]),
    st.text(max_size=40)
    | st.sampled_from(["Basic ZXhvdGVsOnBhNTV3b3JkLWxvbmc=", "10.0.0.1, 203.0.113.9"]),
)
queries = st.dictionaries(
    st.sampled_from(["token", "other"]), st.text(max_size=30) | st.just(TOKEN)
)
remotes = (
    st.none()
    | st.text(max_size=20)
    | st.ip_addresses().map(str)
    | st.sampled_from(["203.0.113.9", "10.0.0.1", "2001:db8::7", "::ffff:203.0.113.1"])
)

SETTINGS = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def parse_or_payload_error(source: ExotelSource, request: WebhookRequest) -> Event | None:
    try:
        event = source.parse(request)
    except PayloadError as exc:
        error: PayloadError | None = exc
    else:
        error = None
    if error is not None:
        assert isinstance(error.message, str)
        return None
    # an accepted event is storable: it serialises and reads back
    assert Event.from_json(event.to_json()).idempotency_key == event.idempotency_key
    assert event.idempotency_key
    return event


@SETTINGS
@given(body=st.binary(max_size=300), content_type=st.sampled_from(CONTENT_TYPES))
def test_arbitrary_bytes(body, content_type):
    for source in SOURCES:
        parse_or_payload_error(
            source, WebhookRequest(body=body, headers={"Content-Type": content_type})
        )


@SETTINGS
@given(payload=payloads)
def test_arbitrary_json_objects(payload: dict[str, Any]):
    body = json.dumps(payload).encode()
    for source in SOURCES:
        event = parse_or_payload_error(
            source, WebhookRequest(body=body, headers={"Content-Type": "application/json"})
        )
        if event is not None:
            assert event.raw == json.loads(body)


@SETTINGS
@given(fields=forms)
def test_arbitrary_forms(fields):
    body = urlencode(fields).encode()
    for source in SOURCES:
        parse_or_payload_error(
            source,
            WebhookRequest(
                body=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
            ),
        )


@SETTINGS
@given(headers=headers, query=queries, remote=remotes, body=st.binary(max_size=50))
def test_arbitrary_requests_authenticate_or_raise(headers, query, remote, body):
    for source in (*SOURCES, GUARDED):
        request = WebhookRequest(body=body, headers=headers, query=query, remote=remote)
        try:
            source.authenticate(request)
        except AuthenticationError as exc:
            refused: AuthenticationError | None = exc
        else:
            refused = None
        if refused is not None:
            assert TOKEN not in refused.message
            assert "pa55word" not in refused.message
            continue
        # passing needs the right token or Basic credentials, and for GUARDED an allowed remote
        # (the client the core resolved; X-Forwarded-For is not the source's to read)
        assert query.get("token") == TOKEN or (
            source is GUARDED and headers.get("Authorization") == BASIC_HEADER
        )
        if source is GUARDED:
            client = ipaddress.ip_address(remote)
            assert any(client in network for network in GUARDED.policy.allowed_networks)


TEMPLATES = [
    {"campaign_sid": "c", "call_sid": "s", "number": "+919876543210", "status": "completed",
     "date_created": "2024-01-15T09:05:00+05:30", "date_updated": "2024-01-15T09:05:47+05:30"},
    {"campaign_sid": "c", "to": "+919876543210", "from": "0XXXXXX4890", "call_sids": ["a", "b"],
     "status": "failed", "date_updated": "2024-01-15T09:35:00+05:30"},
    {"campaign_sid": "c", "status": "Completed", "report_url": "https://r/x.csv",
     "date_updated": "2024-01-15T18:00:00+05:30"},
    {"CallSid": "s", "Status": "completed", "DateUpdated": "2024-01-15 14:30:45", "To": "0912345678",
     "Direction": "outbound-api", "ConversationDuration": 3, "Legs": [{"AnsweredBy": "Human"}]},
]  # fmt: skip


@SETTINGS
@given(
    template=st.sampled_from(TEMPLATES),
    changes=st.dictionaries(st.sampled_from(KEYS), json_values, max_size=3),
    as_form=st.booleans(),
)
def test_documented_shapes_with_arbitrary_field_values(template, changes, as_form):
    """Mutations of real callbacks reach the field readers, not just the generic fallback."""
    payload = {**template, **changes}
    if as_form:
        fields = [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in payload.items()]
        request = WebhookRequest(
            body=urlencode(fields).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    else:
        request = WebhookRequest(
            body=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
        )
    for source in SOURCES:
        parse_or_payload_error(source, request)
