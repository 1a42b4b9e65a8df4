"""Property tests: whatever arrives, the source raises only PayloadError or AuthenticationError."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventrouter import AuthenticationError, Event, PayloadError, WebhookRequest
from eventrouter_pelcro import PelcroOptions, PelcroSource, sign
from eventrouter_pelcro.signature import SIGNATURE_HEADER

SECRET = "property-secret"
SOURCE = PelcroSource("pelcro", PelcroOptions(secrets=[SECRET, "second-secret"]))
TOKEN = "MLT-7b0d4c1e2f3a45968778695a4b3c2d1e"
PROFILE = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

KEYS = st.sampled_from(
    [
        "type", "id", "created", "data", "campaign", "subscription", "user", "customer",
        "run", "download_link", "object", "email", "first_name", "phone", "address",
        "country", "plan", "stats", "magic_link_token", "magicLinkToken", "a.b", "",
    ]
)  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=25,
)
PERSON = st.fixed_dictionaries(
    {},
    optional={k: SCALARS | JSON for k in ("id", "email", "first_name", "last_name", "name", "phone", "magic_link_token")},
)  # fmt: skip
RUN = st.fixed_dictionaries(
    {},
    optional={k: SCALARS | JSON for k in ("id", "key", "date", "download_link", "stats", "sent")},
)
CAMPAIGN = st.fixed_dictionaries(
    {}, optional={"id": SCALARS, "name": SCALARS, "run": RUN | JSON, "plan": JSON, "coupon": JSON}
)
SUBSCRIPTION = st.fixed_dictionaries(
    {}, optional={"id": SCALARS, "user": PERSON | JSON, "address": JSON, "plan": JSON}
)
#: near-valid Pelcro data, so the campaign mappers are exercised beyond their first check
DATA = st.fixed_dictionaries(
    {},
    optional={
        "campaign": CAMPAIGN | JSON, "subscription": SUBSCRIPTION | JSON, "user": PERSON | JSON,
        "customer": PERSON, "run": RUN | JSON, "id": SCALARS, "name": SCALARS,
        "object": st.sampled_from(["subscription", "customer", "user"]) | JSON,
        "magic_link_token": JSON,
    },
)  # fmt: skip
TYPES = st.sampled_from(
    ["campaign.triggered", "campaign.run_completed", "subscription.created", "x"]
) | st.text(max_size=10)
ENVELOPE = st.fixed_dictionaries(
    {"type": TYPES | JSON, "id": st.text(min_size=1, max_size=30) | JSON, "created": st.integers(0, 2**33) | JSON, "data": DATA | JSON},
    optional={"extra": JSON},
)  # fmt: skip
HEADERS = st.dictionaries(
    st.sampled_from([SIGNATURE_HEADER, SIGNATURE_HEADER.lower(), "Content-Type", "X-Other"]),
    st.text(max_size=60),
    max_size=4,
)


def _outcome(request: WebhookRequest) -> Event | None:
    """Authenticate then parse; an expected refusal gives None, anything else propagates."""
    try:
        SOURCE.authenticate(request)
    except AuthenticationError:
        return None
    try:
        return SOURCE.parse(request)
    except PayloadError:
        return None


@PROFILE
@given(body=st.binary(max_size=300), headers=HEADERS)
def test_arbitrary_bytes_and_headers(body, headers):
    # nothing signed with a configured secret: always refused, and only ever as AuthenticationError
    assert _outcome(WebhookRequest(body=body, headers=headers)) is None


@PROFILE
@given(body=st.binary(max_size=300))
def test_arbitrary_signed_bytes_only_raise_payload_error(body):
    request = WebhookRequest(body=body, headers={SIGNATURE_HEADER: sign(body, SECRET)})
    SOURCE.authenticate(request)
    try:
        event = SOURCE.parse(request)
    except PayloadError:
        return
    assert isinstance(event, Event)


@PROFILE
@given(payload=ENVELOPE, headers=HEADERS)
def test_arbitrary_envelopes_only_raise_payload_error(payload, headers):
    body = json.dumps(payload).encode()
    request = WebhookRequest(
        body=body, headers={**headers, SIGNATURE_HEADER: sign(body, "second-secret")}
    )
    event = _outcome(request)
    if event is None:
        return
    assert event.idempotency_key == str(payload["id"])
    assert event.provider_type == payload["type"]
    assert Event.from_json(event.to_json()) == event
    event.redacted().to_json()


def _plant(value, token):
    """``value`` with every credential key's value replaced by ``token``."""
    if isinstance(value, list):
        return [_plant(item, token) for item in value]
    if isinstance(value, dict):
        return {
            key: token if key in ("magic_link_token", "magicLinkToken") else _plant(item, token)
            for key, item in value.items()
        }
    return value


@PROFILE
@given(
    data=DATA | JSON,
    event_type=st.sampled_from(
        ["campaign.triggered", "subscription.renewed", "campaign.run_completed"]
    ),
)
def test_a_planted_token_never_survives_redaction(data, event_type):
    payload = _plant(
        {"type": event_type, "id": "evt_p", "created": 1704067200, "data": data,
         "magic_link_token": None},
        TOKEN,
    )  # fmt: skip
    body = json.dumps(payload).encode()
    try:
        event = SOURCE.parse(WebhookRequest(body=body))
    except PayloadError as exc:
        event, message = None, str(exc)
    if event is None:
        assert TOKEN not in message
        return
    assert TOKEN not in json.dumps(event.data.attributes)
    assert TOKEN not in repr(event.data)
    redacted = event.redacted()
    assert TOKEN not in redacted.to_json()
    assert TOKEN not in json.dumps(redacted.to_cloudevent().get_data())


@PROFILE
@given(body=st.binary(max_size=200), secret=st.text(min_size=1, max_size=40))
def test_sign_then_verify_round_trips(body, secret):
    source = PelcroSource("p", PelcroOptions(secrets=[secret]))
    source.authenticate(WebhookRequest(body=body, headers=source.sign(body).headers))
