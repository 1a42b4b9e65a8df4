"""Events read back from the store's own JSON (``Event.from_stored_json``): the same event as
``Event.from_json`` gives, value and type of every field, for less work; both refuse a value of
the wrong type, and only ``from_json`` refuses a key the model does not know."""

from __future__ import annotations

import json
import re
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
    ("path", "value", "message", "stored_message"),
    [
        # no member of CallStatus
        ("data.call.status", "ended", "expected one of 'queued'", "Invalid enum value 'ended'"),
        # not hashable
        ("data.call.direction", ["outbound"], "expected one of 'inbound'", "got `array`"),
        ("data.call.started_at", "2024-12-19T15:00:00", "has no time zone offset", "timezone"),
        ("received_at", "2024-12-19T15:00:00", "has no time zone offset", "timezone"),
        # what Python would coerce: the stored reader checks every type too
        ("data.contact.phone", 5215512345678, "expected str, got int", "got `int`"),
        ("data.call.duration_seconds", "45", "expected int, got str", "got `str`"),
        ("data.call.attempt_ids", "ab", "expected a list, got str", "got `str`"),
        ("subject", False, "expected str, got a boolean", "got `bool`"),
    ],
)
def test_what_neither_reader_can_take_is_refused_by_both(path, value, message, stored_message):
    text = _with(path, value)
    with pytest.raises((ValueError, CattrsError)) as caught:
        Event.from_json(text)
    assert any(message in text for text in _messages(caught.value))
    # the stored reader names the path of what it refuses
    with pytest.raises(ValueError, match=re.escape(f"at `$.{path}`")) as caught:
        Event.from_stored_json(text)
    assert stored_message in str(caught.value)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("data.contact.nickname", "Extra fields in constructor for Contact: nickname"),
        ("future_field", "Extra fields in constructor for Event: future_field"),
    ],
)
def test_a_key_the_model_does_not_know_is_refused_from_outside_and_skipped_from_a_store(
    path, message
):
    # a store may hold events written by a later version: they still deliver after a downgrade
    text = _with(path, "Sof")
    with pytest.raises(ClassValidationError) as caught:
        Event.from_json(text)
    assert any(message in text for text in _messages(caught.value))
    assert Event.from_stored_json(text) == full_event()


def _messages(error):
    """The messages of ``error`` and of the errors it groups (from_json: one per field)."""
    yield str(error)
    for inner in getattr(error, "exceptions", ()):
        yield from _messages(inner)
