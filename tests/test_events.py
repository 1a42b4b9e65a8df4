"""The event model: lossless JSON and CloudEvent round trips, redaction, time zones."""

from __future__ import annotations

import enum
import itertools
import json
import re
import time
from datetime import UTC, datetime, timedelta, timezone
from unittest import mock
from zoneinfo import ZoneInfo

import attrs
import pytest
from cloudevents.core.bindings.http import from_http_event, to_binary_event, to_structured_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventrouter import fastjson
from eventrouter.events import (
    REDACTED,
    AnsweredBy,
    Call,
    CallDirection,
    CallStatus,
    Campaign,
    CampaignStatus,
    Contact,
    Event,
    EventData,
    EventType,
    TranscriptTurn,
    _strict_dumps,
    new_event_id,
)

IST = timezone(timedelta(hours=5, minutes=30))


def full_event() -> Event:
    return Event(
        id="evt_1",
        source="altur-prod",
        type=EventType.CALL_ENDED,
        time=datetime(2024, 12, 19, 15, 0, 10, tzinfo=IST),
        subject="cll_1",
        provider="altur",
        provider_type="on_call_end",
        idempotency_key="cll_1",
        received_at=datetime(2024, 12, 19, 9, 30, 11, 123456, tzinfo=UTC),
        data=EventData(
            contact=Contact(
                phone="+521234567890", email="a@example.com", name="Sofía", external_id="u1"
            ),
            call=Call(
                id="cll_1",
                direction=CallDirection.OUTBOUND,
                status=CallStatus.NO_ANSWER,
                provider_status="no-answer",
                answered_by=AnsweredBy.MACHINE,
                started_at=datetime(2024, 12, 19, 15, 0, tzinfo=IST),
                ended_at=datetime(2024, 12, 19, 15, 0, 45, tzinfo=IST),
                duration_seconds=45,
                recording_url="https://example.com/r.mp3",
                transcript=(
                    TranscriptTurn(
                        speaker="agent", text="Hola", at=datetime(2024, 12, 19, tzinfo=UTC)
                    ),
                ),
                attempt_ids=("a", "b"),
            ),
            campaign=Campaign(
                id="1234",
                name="Q2",
                status=CampaignStatus.COOLDOWN,
                previous_status=CampaignStatus.ACTIVE,
                cycle=2,
                next_cycle_at=None,
                stats={"calls": 10, "rate": 0.5},
            ),
            attributes={
                "extracted_data": {"Payment Amount": "1200"},
                "tags": ["x"],
                "token": "s3cret",
            },
        ),
        raw={
            "id": "cll_1",
            "nested": {"token": "s3cret"},
            "list": [1, 2, {"é": None}],
            "items": [{"token": "s3cret"}],
        },
        sensitive=("nested.token", "token", "items.0.token", "items.5.token", "missing.token"),
    )


def test_json_round_trip_is_lossless():
    event = full_event()
    text = event.to_json()
    assert Event.from_json(text) == event
    decoded = json.loads(text)
    assert decoded["time"] == "2024-12-19T15:00:10+05:30"
    assert decoded["data"]["call"]["status"] == "no_answer"
    assert "Sofía" in text  # non-ASCII kept as is


def test_cloudevent_round_trip_is_lossless_structured_and_binary():
    event = full_event()
    cloudevent = event.to_cloudevent()
    assert cloudevent.get_id() == "evt_1"
    assert cloudevent.get_source() == "altur-prod"
    assert cloudevent.get_type() == "call.ended"
    assert cloudevent.get_subject() == "cll_1"
    assert cloudevent.get_specversion() == "1.0"
    assert Event.from_cloudevent(cloudevent) == event
    for encode in (to_structured_event, to_binary_event):
        message = encode(cloudevent)
        assert Event.from_cloudevent(from_http_event(message)) == event


def test_naive_times_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        full_event().evolve(time=datetime(2024, 1, 1))
    for make in (
        lambda at: Call(started_at=at),
        lambda at: Call(ended_at=at),
        lambda at: TranscriptTurn(speaker="agent", text="hi", at=at),
        lambda at: Campaign(next_cycle_at=at),
    ):
        with pytest.raises(ValueError, match="timezone-aware"):
            make(datetime(2024, 1, 1))


#: Asia/Kolkata's local mean time (until 1854): an offset of seconds, which RFC 3339 cannot write
KOLKATA = ZoneInfo("Asia/Kolkata")


def test_a_time_in_local_mean_time_is_held_in_utc_and_reads_back_from_the_store():
    # a naive time before 1854 read in the source's time_zone (Asia/Kolkata) has an offset of
    # seconds: before, the store wrote "+05:53:28" and its reader refused the event at every
    # claim, holding up the sink's deliveries behind it
    old = datetime(1850, 6, 1, 9, 30, tzinfo=KOLKATA)
    assert old.utcoffset() == timedelta(hours=5, minutes=53, seconds=28)
    turn = TranscriptTurn(speaker="agent", text="hi", at=old)
    call = Call(started_at=old, ended_at=old, transcript=(turn,))
    event = full_event().evolve(
        time=old, data=EventData(call=call, campaign=Campaign(next_cycle_at=old))
    )
    for held in (event.time, call.started_at, call.ended_at, turn.at):
        assert held.tzinfo is UTC
        assert held == old  # the same instant
    assert event.data.campaign.next_cycle_at.tzinfo is UTC
    text = event.to_json()
    assert '"time":"1850-06-01T03:36:32+00:00"' in text
    assert Event.from_stored_json(text) == event
    assert Event.from_json(text) == event
    # "0001-01-01 00:00:00", a placeholder some systems send for "no date": UTC has no date
    # for it, so its offset loses its seconds (28 s off an instant that means nothing)
    placeholder = full_event().evolve(time=datetime(1, 1, 1, tzinfo=KOLKATA))
    assert placeholder.time.utcoffset() == timedelta(hours=5, minutes=53)
    assert '"time":"0001-01-01T00:00:00+05:53"' in placeholder.to_json()
    assert Event.from_stored_json(placeholder.to_json()) == placeholder
    west = datetime(9999, 12, 31, 23, 59, tzinfo=timezone(-timedelta(minutes=25, seconds=21)))
    assert Call(started_at=west).started_at.utcoffset() == -timedelta(minutes=25)
    # an offset of whole minutes is kept as it is
    kept = full_event().evolve(time=datetime(2024, 6, 1, 9, 30, tzinfo=KOLKATA))
    assert kept.time.tzinfo is KOLKATA
    assert '"time":"2024-06-01T09:30:00+05:30"' in kept.to_json()


def test_redacted_blanks_sensitive_paths_only():
    event = full_event()
    redacted = event.redacted()
    assert redacted.raw["nested"]["token"] == REDACTED
    assert redacted.raw["items"] == [{"token": REDACTED}]
    assert redacted.data.attributes["token"] == REDACTED
    assert redacted.raw["list"] == event.raw["list"]
    assert "s3cret" not in redacted.to_json()
    assert event.raw["nested"]["token"] == "s3cret"  # the original is untouched
    plain = event.evolve(sensitive=())
    assert plain.redacted() is plain


def test_vocabularies_come_back_as_enums():
    event = Event.from_json(full_event().to_json())
    assert event.data.call.status is CallStatus.NO_ANSWER
    assert event.data.call.direction is CallDirection.OUTBOUND
    assert event.data.campaign.status is CampaignStatus.COOLDOWN


def _nested(depth, value=1):
    for n in range(depth):
        value = [value] if n % 2 else {"k": value}
    return value


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"x": float("nan")}, "cannot represent"),
        ({"x": float("inf")}, "cannot represent"),
        ({"x": "\ud800"}, "lone UTF-16 surrogate"),
        ({"x": [1, "a", None, True, {"y": (2.5, -float("inf"))}]}, "cannot represent"),
        # past the depth where the check stops recursing and walks a stack
        ({"x": _nested(100, float("nan"))}, "cannot represent"),
        ({"x": _nested(1500, 1.5)}, "nested too deeply"),
    ],
)
def test_what_json_cannot_carry_is_a_payload_error(raw, message):
    from eventrouter.errors import PayloadError

    with pytest.raises(PayloadError, match=message):
        full_event().evolve(raw=raw).to_json()


def test_nesting_limit():
    from eventrouter.payload import MAX_NESTING, nesting_exceeds

    assert not nesting_exceeds(_nested(MAX_NESTING))
    assert nesting_exceeds(_nested(MAX_NESTING + 1))
    assert nesting_exceeds(_nested(MAX_NESTING, []))  # an empty list counts as a level
    assert nesting_exceeds({"a": {"b": _nested(5000)}})  # however deep the input goes
    assert not nesting_exceeds(full_event().raw)
    assert not nesting_exceeds("text")
    assert not nesting_exceeds(None)
    # a limit deeper than the walk recurses: the same answers, from an explicit stack
    assert not nesting_exceeds(_nested(1000), limit=1000)
    assert nesting_exceeds(_nested(1001), limit=1000)


# -- round trips of arbitrary events (hypothesis) ----------------------------------------------

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
NAME = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)
# fixed offsets: a zone's name is not part of an ISO 8601 timestamp (the instant and the offset
# are), and Python never calls a time in a zone's fold or gap equal to one in another zone
AWARE = st.datetimes(
    min_value=datetime(1900, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from(
        [
            UTC,
            IST,
            timezone(timedelta(hours=-6)),
            timezone(timedelta(hours=13, minutes=45)),
            # local mean time (Kolkata's, Dublin's): held in UTC (see _rfc3339)
            timezone(timedelta(hours=5, minutes=53, seconds=28)),
            timezone(-timedelta(minutes=25, seconds=21)),
        ]
    ),
)
NUMBER = st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | NUMBER | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=15,
)
PARTS = st.builds(
    EventData,
    contact=st.none()
    | st.builds(
        Contact,
        phone=st.none() | TEXT,
        email=st.none() | TEXT,
        name=st.none() | TEXT,
        external_id=st.none() | TEXT,
    ),
    call=st.none()
    | st.builds(
        Call,
        id=st.none() | TEXT,
        direction=st.none() | st.sampled_from(CallDirection),
        status=st.sampled_from(CallStatus),
        provider_status=st.none() | TEXT,
        answered_by=st.none() | st.sampled_from(AnsweredBy),
        started_at=st.none() | AWARE,
        ended_at=st.none() | AWARE,
        duration_seconds=st.none() | st.integers(0, 10**6),
        recording_url=st.none() | TEXT,
        transcript=st.lists(
            st.builds(TranscriptTurn, speaker=TEXT, text=TEXT, at=st.none() | AWARE), max_size=3
        ).map(tuple),
        attempt_ids=st.lists(TEXT, max_size=3).map(tuple),
        from_number=st.none() | TEXT,
        to_number=st.none() | TEXT,
    ),
    campaign=st.none()
    | st.builds(
        Campaign,
        id=st.none() | TEXT,
        name=st.none() | TEXT,
        status=st.sampled_from(CampaignStatus),
        provider_status=st.none() | TEXT,
        previous_status=st.none() | st.sampled_from(CampaignStatus),
        run_id=st.none() | TEXT,
        cycle=st.none() | st.integers(0, 10**6),
        next_cycle_at=st.none() | AWARE,
        report_url=st.none() | TEXT,
        stats=st.dictionaries(TEXT, NUMBER, max_size=4),
    ),
    attributes=st.dictionaries(TEXT, JSON_VALUES, max_size=4),
)
EVENTS = st.builds(
    Event,
    id=st.builds(new_event_id),
    source=NAME.filter(lambda s: s.strip()),
    type=NAME,
    time=AWARE,
    provider=NAME,
    provider_type=NAME,
    idempotency_key=NAME,
    received_at=AWARE,
    data=PARTS,
    raw=JSON_VALUES,
    subject=st.none() | TEXT,
    sensitive=st.lists(
        st.text(
            alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=","),
            min_size=1,
            max_size=20,
        ),
        max_size=3,
    ).map(tuple),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=EVENTS)
def test_any_event_round_trips_through_json_and_cloudevents(event):
    assert Event.from_json(event.to_json()) == event
    cloudevent = event.to_cloudevent()
    assert Event.from_cloudevent(cloudevent) == event
    for encode in (to_structured_event, to_binary_event):
        assert Event.from_cloudevent(from_http_event(encode(cloudevent))) == event


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=EVENTS)
def test_to_json_writes_exactly_what_to_dict_gives_the_json_codec(event):
    # to_json hands the model to orjson whole (_fields_of), skipping to_dict: the same text
    assert event.to_json() == fastjson.dumps(event.to_dict(), _strict_dumps)


@pytest.mark.parametrize(
    "odd",
    [
        2**70,  # beyond 64 bits: orjson refuses it, the fallback writes it
        Contact(name="x"),  # objects a plugin left in attributes, written as they always were
        datetime(1850, 1, 1, tzinfo=ZoneInfo("Asia/Kolkata")),
        CallStatus.COMPLETED,
    ],
)
def test_what_is_no_json_in_the_json_parts_is_written_as_before(odd):
    for depth in (1, 100):  # 100: past the recursion, through the explicit stack
        nested: object = odd
        for _ in range(depth):
            nested = [nested]
        event = full_event().evolve(data=EventData(attributes={"odd": nested}))
        assert event.to_json() == fastjson.dumps(event.to_dict(), _strict_dumps)
        assert json.loads(event.to_json())["data"]["attributes"]["odd"] is not None


@pytest.mark.parametrize(
    ("odd", "refused"),
    [
        # written the old way, by value, and read back as the member
        ({"data": EventData(call=Call(status="completed"))}, False),  # a str, not a CallStatus
        ({"data": EventData(call=Call(direction="inbound"))}, False),
        ({"data": EventData(campaign=Campaign(status="active"))}, False),
        # refused by cattrs (AttributeError), as before
        ({"data": EventData(call=Call(started_at="2024-01-01T00:00:00+00:00"))}, True),
        ({"data": EventData(call=Call(transcript=({"speaker": "agent", "text": "hi"},)))}, True),
        ({"data": EventData(call=Call(transcript=(TranscriptTurn("agent", "hi", at=1),)))}, True),
        ({"data": EventData(campaign=Campaign(next_cycle_at=0))}, True),
        ({"data": EventData(contact={"phone": "+1"})}, True),
        ({"data": None}, True),
        # written by cattrs as they were, for the stores' reader to refuse at every claim: now
        # refused here (TypeError), and ingest answers 503
        ({"data": EventData(call=Call(answered_by=1))}, True),
        ({"data": EventData(call=Call(duration_seconds=True))}, True),  # JSON's true, for an int
        ({"data": EventData(call=Call(duration_seconds=1.5))}, True),
        ({"data": EventData(call=Call(attempt_ids=(1,)))}, True),
        ({"data": EventData(campaign=Campaign(stats={"sent": "12"}))}, True),
        ({"data": EventData(contact=Contact(phone=123))}, True),
        ({"subject": 5}, True),
        ({"sensitive": ("token", 1)}, True),
    ],
)
def test_a_field_holding_another_class_is_stored_only_if_it_reads_back(odd, refused):
    # attrs does not check a field's class; the fast way (orjson) never writes such a field,
    # the old way (cattrs) writes it only if the stores' reader reads it back
    event = attrs.evolve(full_event(), **odd)
    if refused:
        with pytest.raises((AttributeError, TypeError)):
            event._write_json()
    else:
        text = event._write_json()
        assert text == fastjson.dumps(event.to_dict(), _strict_dumps)
        assert Event.from_stored_json(text) == event


def test_the_refusal_says_what_is_wrong_and_where_but_not_the_value():
    event = attrs.evolve(full_event(), subject=5)
    with pytest.raises(TypeError, match=r"Expected `str \| null`, got `int` - at `\$.subject`"):
        event._write_json()
    unknown = attrs.evolve(full_event(), data=EventData(call=Call(status=_Words.SECRET)))
    with pytest.raises(TypeError) as refused:
        unknown._write_json()
    assert str(refused.value) == (
        "the event cannot be stored: Invalid enum value - at `$.data.call.status`"
    )


class _Words(enum.Enum):
    SECRET = "sk_live_hidden"


class _Seconds(enum.IntEnum):
    MINUTE = 60


@pytest.mark.parametrize(
    "kin",
    [
        {},  # a sound event
        {"type": EventType.CALL_ENDED},  # a str's subclass in a str field: written as the str
        {"data": EventData(call=Call(duration_seconds=_Seconds.MINUTE))},  # an int's, for an int
        {"data": EventData(campaign=Campaign(stats={"sent": 12, "rate": 0.5}))},
        {"sensitive": [REDACTED]},  # a list for a tuple
    ],
)
def test_a_field_holding_its_own_class_or_kin_is_written_the_fast_way_and_reads_back(kin):
    event = attrs.evolve(full_event(), **kin)
    with mock.patch.object(Event, "to_dict", side_effect=AssertionError("the old way")):
        text = event._write_json()
    assert text == fastjson.dumps(event.to_dict(), _strict_dumps)
    assert Event.from_stored_json(text).to_json() == text


def test_an_empty_subject_is_no_subject():
    event = full_event().evolve(subject="")
    assert event.subject is None
    assert "subject" not in event.to_cloudevent().get_attributes()


def test_event_ids_sort_in_the_order_they_were_made_and_stay_unique():
    # time first (milliseconds), then 80 random bits: the stores' keys on the id grow at their end
    batches = []
    for _ in range(3):
        batches.append([new_event_id() for _ in range(2000)])
        time.sleep(0.002)
    ids = [i for batch in batches for i in batch]
    assert all(re.fullmatch(r"evt_[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    for earlier, later in itertools.pairwise(batches):
        assert max(earlier) < min(later)
    made = int(ids[0][4:16], 16) / 1000
    assert abs(made - time.time()) < 60
