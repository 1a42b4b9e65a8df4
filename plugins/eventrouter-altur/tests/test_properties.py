"""Whatever arrives, the source raises only AuthenticationError or PayloadError."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventrouter import AuthenticationError, Event, PayloadError, WebhookRequest
from eventrouter.testing import structure_options
from eventrouter_altur import AlturOptions, AlturSource

FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("*.json"))
SECRET = base64.b64encode(b"property-test-secret-of-32-bytes").decode()

SIGNED = AlturSource("altur", structure_options({"secrets": [SECRET]}, AlturOptions))
OPEN = AlturSource(
    "altur",
    structure_options(
        {"insecure": True, "phone_region": "MX", "time_zone": "Asia/Kolkata"}, AlturOptions
    ),
)

EXAMPLES = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "on_call_end",
            "campaign.status_changed",
            "campaign.cycle_completed",
            "outbound",
            "inbound",
            "ended",
            "2024-12-19T15:00:10Z",
            "2024-12-19 15:00:10",
            "+521234567890",
            "5512345678",
            "assistant",
            "user",
            "finished",
            "",
        ]
    ),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)

header_names = st.sampled_from(
    ["X-Altur-Signature", "x-altur-signature", "Content-Type", "X-Other"]
) | st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20)
headers = st.lists(st.tuples(header_names, st.text(max_size=80)), max_size=4)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into a JSON value, the root included."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _replace(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = _replace(value[head], rest, new)
    return copy


@st.composite
def mutated_fixtures(draw: st.DrawFn) -> bytes:
    """A real Altur payload with one value anywhere in it replaced by any JSON value."""
    payload = json.loads(draw(st.sampled_from(FIXTURES)).read_bytes())
    path = draw(st.sampled_from(_paths(payload)))
    return json.dumps(
        _replace(payload, path, draw(json_values)), ensure_ascii=draw(st.booleans())
    ).encode()


def _parse_or_payload_error(body: bytes) -> None:
    try:
        event = OPEN.parse(WebhookRequest(body=body))
    except PayloadError as exc:
        error = exc
    else:
        assert Event.from_json(event.to_json()) == event
        return
    assert error.status == 400
    assert error.message


@EXAMPLES
@given(body=st.binary(max_size=300), request_headers=headers)
def test_arbitrary_requests_raise_only_the_documented_errors(body, request_headers):
    request = WebhookRequest(body=body, headers=request_headers)
    # nobody can forge an HMAC at random: every such request is refused, without the secret
    with pytest.raises(AuthenticationError) as caught:
        SIGNED.authenticate(request)
    assert SECRET not in caught.value.message
    _parse_or_payload_error(body)


@EXAMPLES
@given(value=json_values, request_headers=headers)
def test_arbitrary_json_raises_only_the_documented_errors(value, request_headers):
    body = json.dumps(value).encode()
    with pytest.raises(AuthenticationError):
        SIGNED.authenticate(WebhookRequest(body=body, headers=request_headers))
    _parse_or_payload_error(body)


@EXAMPLES
@given(body=mutated_fixtures())
def test_mutated_altur_payloads_raise_only_payload_errors(body):
    _parse_or_payload_error(body)


@EXAMPLES
@given(body=st.binary(max_size=300) | mutated_fixtures())
def test_whatever_the_source_signs_it_accepts(body):
    signed = SIGNED.sign(body)
    SIGNED.authenticate(WebhookRequest(body=body, headers=signed.headers))
