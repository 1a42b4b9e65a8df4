"""Events read back from the store's own JSON (``Event.from_stored_json``): the same event as
``Event.from_json`` gives, value and type of every field, for less work; ``from_json`` stays strict."""

from __future__ import annotations

import json
from datetime import datetime

import attrs
import pytest
from cattrs.errors import CattrsError, ClassValidationError
from hypothesis import HealthCheck, given, settings

from eventrouter.events import Campaign, Event

from .test_events import EVENTS, full_event


def _shape(value):
    """``value`` with the type of everything in it, so that ``"completed"`` differs from
    ``CallStatus.COMPLETED``, 1 from 1.0 and True (all of which compare equal)."""
    if attrs.has(type(value)):
        fields = attrs.fields(type(value))
        return type(value), {f.name: _shape(getattr(value, f.name)) for f in fields if f.eq}
    if isinstance(value, dict):
        return dict, {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value), [_shape(item) for item in value]
    if isinstance(value, datetime):
        return datetime, value, value.utcoffset()  # the same instant in another zone is equal
    return type(value), value


def _read_both_ways(text):
    stored = Event.from_stored_json(text)
    assert _shape(stored) == _shape(Event.from_json(text))
    assert Event.from_stored_json(text.encode()) == stored
    return stored


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=EVENTS)
def test_any_event_reads_back_as_from_json_reads_it(event):
    text = event.to_json()
    stored = _read_both_ways(text)
    assert _shape(stored) == _shape(event)
    assert stored.to_json() == text


def test_the_full_event_and_numbers_beyond_64_bits_read_back_exactly():
    event = full_event().evolve(raw={"big": 2**70, "small": -(2**63) - 1, "float": 1.0})
    campaign = Campaign(stats={"calls": 10**19, "rate": 0.5, "zero": 0.0})
    event = event.evolve(data=attrs.evolve(event.data, campaign=campaign))
    stored = _read_both_ways(event.to_json())
    assert stored == event  # type is str when read back (it was written from an EventType)
    assert _shape(stored.raw) == _shape(event.raw)
    assert _shape(stored.data) == _shape(event.data)


def _stored_dict():
    return json.loads(full_event().to_json())


def _with(path, value):
    document = _stored_dict()
    *parents, last = path.split(".")
    node = document
    for part in parents:
        node = node[part]
    node[last] = value
    return json.dumps(document)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("data.call.status", "ended", "expected one of 'queued'"),  # no member of CallStatus
        ("data.call.direction", ["outbound"], "expected one of 'inbound'"),  # not hashable
        ("data.call.started_at", "2024-12-19T15:00:00", "has no time zone offset"),
        ("received_at", "2024-12-19T15:00:00", "has no time zone offset"),
        ("data.contact.nickname", "Sof", "Extra fields in constructor for Contact: nickname"),
        ("future_field", 1, "Extra fields in constructor for Event: future_field"),
    ],
)
def test_what_neither_reader_can_take_is_refused_by_both(path, value, message):
    text = _with(path, value)
    for read in (Event.from_json, Event.from_stored_json):
        with pytest.raises((ValueError, CattrsError)) as caught:
            read(text)
        assert any(message in text for text in _messages(caught.value)), read


def _messages(error):
    """The messages of ``error`` and of the errors it groups (from_json: one per field)."""
    yield str(error)
    for inner in getattr(error, "exceptions", ()):
        yield from _messages(inner)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("data.contact.phone", 5215512345678),
        ("data.call.duration_seconds", "45"),
        ("data.call.attempt_ids", "ab"),
        ("subject", False),
    ],
)
def test_from_json_still_refuses_what_python_would_coerce(path, value):
    # the stored reader trusts the types: to_json wrote what the event held
    with pytest.raises(ClassValidationError) as caught:
        Event.from_json(_with(path, value))
    assert any(text.startswith("expected") for text in _messages(caught.value))
