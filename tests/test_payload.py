"""The source toolkit: Payload's getters name the field's path, and make_event takes EventParts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import attrs
import pytest

from eventrouter import (
    CallStatus,
    EventData,
    EventParts,
    Payload,
    PayloadError,
    Source,
    phone_e164,
)

BODY = {
    "id": 42,
    "call": {
        "duration": "abc",
        "seconds": 45.0,
        "status": "No-Answer",
        "ended_at": "2024-01-15 14:30:45",
        "to": "09876543210",
        "email": " ada@example.com ",
        "legs": [{"answered": True}, "x"],
        "tags": ["a", 1],
    },
}


def read(**settings):
    return Payload(BODY, **settings)


def error(getter):
    with pytest.raises(PayloadError) as caught:
        getter()
    return str(caught.value)


def test_errors_name_the_path_and_the_type_never_the_value():
    call = read().nested("call")
    assert (
        error(lambda: call.integer("duration"))
        == "call.duration: expected a whole number, got string"
    )
    assert error(lambda: call.text("seconds")) == "call.seconds: expected a string, got number"
    assert error(lambda: call.nested("status")) == "call.status: expected an object, got string"
    assert error(lambda: call.nested_list("legs")) == "call.legs[1]: expected an object, got string"
    assert error(lambda: call.strings("tags")) == "call.tags[1]: expected a string, got number"
    assert error(lambda: read().nested("missing", required=True)) == (
        "missing: required object is missing"
    )
    assert error(lambda: call.timestamp("status")) == (
        "call.status: expected Unix seconds or an ISO 8601 timestamp, got string"
    )
    assert (
        error(lambda: call.boolean("status")) == "call.status: expected true or false, got string"
    )


def test_getters_return_typed_values_or_none():
    payload = read(naive_tz=timezone(timedelta(hours=5, minutes=30)), phone_region="IN")
    call = payload.nested("call")
    assert payload.identifier("id") == "42"
    assert call.integer("seconds") == 45
    assert call.text("missing") is None
    assert (
        call.enum("status", mapping={"no-answer": CallStatus.NO_ANSWER}, default=CallStatus.UNKNOWN)
        == CallStatus.NO_ANSWER
    )
    assert call.timestamp("ended_at") == datetime(2024, 1, 15, 9, 0, 45, tzinfo=UTC)
    assert call.phone("to") == "+919876543210"
    assert call.email("email") == "ada@example.com"
    assert [
        leg.boolean("answered")
        for leg in Payload({"legs": [{"answered": True}]}).nested_list("legs")
    ] == [True]
    assert call.get("nothing", "seconds") == 45.0  # the first key present wins


def test_text_values_are_read_as_a_form_sends_them():
    form = Payload({"n": " 12 ", "flag": "false", "name": "  "}, text_values=True)
    assert (form.integer("n"), form.boolean("flag"), form.text("name")) == (12, False, None)
    assert form.text("n") == "12"


def test_integers_refuse_fractions_and_negatives():
    payload = Payload({"half": 4.5, "negative": -1, "flag": True})
    assert "expected a whole number" in error(lambda: payload.integer("half"))
    assert "at least 0" in error(lambda: payload.integer("negative", minimum=0))
    assert error(lambda: payload.integer("flag")) == "flag: expected a whole number, got boolean"


class Demo(Source):
    type_name = "demo"

    def authenticate(self, request):
        pass

    def parse(self, request):
        raise NotImplementedError


def test_make_event_takes_the_parts_a_parser_returns():
    parts = EventParts(type="demo.x", provider_type="x", idempotency_key="k", raw={"a": 1})
    event = Demo("here", None).make_event(parts, subject="s")
    assert (event.source, event.type, event.idempotency_key, event.subject) == (
        "here",
        "demo.x",
        "k",
        "s",
    )
    assert event.time == event.received_at
    assert event.data == EventData()
    assert Demo("here", None).make_event(**attrs.asdict(parts, recurse=False)).type == "demo.x"


def test_a_phone_number_read_again_gives_the_same_answer_for_its_region():
    # answers are remembered (phonenumbers is slow): the region is part of what is remembered
    for _ in range(2):
        assert phone_e164(" 09876543210 ", default_region="IN") == "+919876543210"
        assert phone_e164("09876543210", default_region="US") is None
        assert phone_e164(9876543210, default_region="IN") == "+919876543210"
        assert phone_e164("+000000000000") is None
        assert phone_e164("0XXX4890", default_region="IN") is None
        assert phone_e164(True) is None
