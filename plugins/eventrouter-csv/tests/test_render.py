"""render_row's generated code makes the cells the plain loop over getters made, for any event.

The reference below is render_row as it was before it was generated (ad2eafc): a getter and
_cell per column. Events are drawn with the values that take each path of the generated code:
text that is a formula, has line breaks or NUL, begins with spaces, or is an E.164 number;
times in and out of UTC, some equal; vocabularies' members; empty and full tuples and dicts;
and values of other types than the model declares (attrs does not check them), which must fall
back to the general path.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from eventrouter import (
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
)
from eventrouter_csv import COLUMNS, DEFAULT_COLUMNS
from eventrouter_csv.columns import REPORT_FILE_COLUMN, render_row

# -- the reference: render_row as a loop over getters (ad2eafc) ---------------------------------

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_E164 = re.compile(r"\+[0-9]{1,15}")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True, default=str)


def _neutralise(text):
    if text.lstrip(" ").startswith(_TRIGGERS) and not _E164.fullmatch(text):
        return "'" + text
    return text


def _cell(value):
    if isinstance(value, str):
        text = value
    elif value is None:
        return ""
    elif isinstance(value, bool):
        return "true" if value else "false"
    elif isinstance(value, int | float):
        return str(value)
    elif isinstance(value, datetime):
        return (value if value.tzinfo is UTC else value.astimezone(UTC)).isoformat()
    elif isinstance(value, dict | tuple | list) and not value:
        return ""
    elif isinstance(value, dict):
        text = _JSON.encode(value)
    elif isinstance(value, tuple | list):
        if all(isinstance(item, TranscriptTurn) for item in value):
            text = " | ".join(f"{turn.speaker}: {turn.text}" for turn in value)
        else:
            text = " ".join(str(item) for item in value)
    else:
        text = str(value)
    return _neutralise(
        text if text.isprintable() else _LINE_BREAK.sub(" ", text).replace("\x00", "")
    )


def _part(part, attribute):
    def get(event):
        value = getattr(event.data, part)
        return None if value is None else getattr(value, attribute)

    return get


REFERENCE = {
    "event_id": lambda e: e.id,
    "received_at": lambda e: e.received_at,
    "time": lambda e: e.time,
    "source": lambda e: e.source,
    "provider": lambda e: e.provider,
    "type": lambda e: e.type,
    "provider_type": lambda e: e.provider_type,
    "subject": lambda e: e.subject,
    "contact_phone": _part("contact", "phone"),
    "contact_email": _part("contact", "email"),
    "contact_name": _part("contact", "name"),
    "contact_external_id": _part("contact", "external_id"),
    "call_id": _part("call", "id"),
    "call_direction": _part("call", "direction"),
    "call_status": _part("call", "status"),
    "call_provider_status": _part("call", "provider_status"),
    "call_answered_by": _part("call", "answered_by"),
    "call_started_at": _part("call", "started_at"),
    "call_ended_at": _part("call", "ended_at"),
    "call_duration_seconds": _part("call", "duration_seconds"),
    "call_from_number": _part("call", "from_number"),
    "call_to_number": _part("call", "to_number"),
    "call_recording_url": _part("call", "recording_url"),
    "call_attempt_ids": _part("call", "attempt_ids"),
    "call_transcript": _part("call", "transcript"),
    "campaign_id": _part("campaign", "id"),
    "campaign_name": _part("campaign", "name"),
    "campaign_status": _part("campaign", "status"),
    "campaign_provider_status": _part("campaign", "provider_status"),
    "campaign_previous_status": _part("campaign", "previous_status"),
    "campaign_run_id": _part("campaign", "run_id"),
    "campaign_cycle": _part("campaign", "cycle"),
    "campaign_next_cycle_at": _part("campaign", "next_cycle_at"),
    "campaign_report_url": _part("campaign", "report_url"),
    REPORT_FILE_COLUMN: lambda e: None,
    "campaign_stats": _part("campaign", "stats"),
    "attributes": lambda e: e.data.attributes,
    "idempotency_key": lambda e: e.idempotency_key,
    "specversion": lambda e: e.specversion,
}


def reference_row(event, columns, report_file=None):
    cells = []
    for name in columns:
        value = report_file if name == REPORT_FILE_COLUMN else REFERENCE[name](event)
        cells.append("" if value is None else _cell(value))
    return cells


# -- events with every kind of value -------------------------------------------------------------

#: text rich in what the archive must rewrite: formula triggers, leading spaces, line breaks,
#: NUL, other characters that are not printable, non-ASCII letters
TEXT = (
    st.text(
        alphabet=st.sampled_from(list("aZé 0+=-@\t\r\n\x00\x85\u2028,\"'{")) | st.characters(),
        max_size=12,
    )
    | st.from_regex(r"\+[0-9]{1,15}", fullmatch=True)  # E.164: left as it is
    | st.from_regex(r" {0,3}[=+\-@\t\r][a-z0-9(+]{0,5}", fullmatch=True)  # formulas
)
ZONES = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-6))]
AWARE = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.sampled_from(ZONES)
)


class Moment(datetime):
    """A datetime of a subclass that writes itself its own way, as pandas' Timestamp does."""

    def isoformat(self, sep="T", timespec="auto"):
        return "moment " + super().isoformat(sep, timespec)


def times():
    """A time drawn often equal to another (a row reuses the text of an equal UTC time): the same
    instant in another zone, or named "Z" (UTC's offset, another tzinfo), or a subclass's."""
    pool = [
        datetime(2024, 12, 19, 15, 0, 10, tzinfo=UTC),
        datetime(2024, 12, 19, 15, 0, 55, tzinfo=UTC),
    ]
    same = st.sampled_from(pool)
    return st.one_of(
        same,
        AWARE,
        same.map(lambda t: t.astimezone(ZONES[1])),
        same.map(lambda t: t.replace(tzinfo=timezone(timedelta(0), "Z"))),
        same.map(lambda t: Moment.fromisoformat(t.isoformat())),
    )


def maybe(strategy):
    """A value of the declared type, None, or sometimes a value of another type (attrs does not
    check types: the general path must take it)."""
    other = (
        st.integers() | st.booleans() | st.floats() | st.tuples(TEXT) | st.sampled_from(EventType)
    )
    return st.one_of(st.none(), strategy, strategy, strategy, other)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT | AWARE,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=10,
)
DICTS = st.dictionaries(TEXT, JSON_VALUES, max_size=4) | st.dictionaries(
    st.integers(), st.integers(), max_size=2
)
TURNS = st.builds(TranscriptTurn, speaker=TEXT, text=TEXT, at=st.none() | AWARE)
SEQUENCES = st.one_of(
    st.lists(TURNS, max_size=3).map(tuple),
    st.lists(TEXT, max_size=3).map(tuple),
    st.lists(TEXT | TURNS | st.integers(), max_size=3),
)


def vocabulary(kind):
    """A member of the vocabulary, or its value as plain text."""
    return st.sampled_from(kind) | st.sampled_from([member.value for member in kind])


CONTACTS = st.builds(
    Contact, phone=maybe(TEXT), email=maybe(TEXT), name=maybe(TEXT), external_id=maybe(TEXT)
)
CALLS = st.builds(
    Call,
    id=maybe(TEXT),
    direction=maybe(vocabulary(CallDirection)),
    status=maybe(vocabulary(CallStatus)),
    provider_status=maybe(TEXT),
    answered_by=maybe(vocabulary(AnsweredBy)),
    started_at=maybe(times()),
    ended_at=maybe(times()),
    duration_seconds=maybe(st.integers()),
    recording_url=maybe(TEXT),
    transcript=maybe(SEQUENCES),
    attempt_ids=maybe(SEQUENCES),
    from_number=maybe(TEXT),
    to_number=maybe(TEXT),
)
CAMPAIGNS = st.builds(
    Campaign,
    id=maybe(TEXT),
    name=maybe(TEXT),
    status=maybe(vocabulary(CampaignStatus)),
    provider_status=maybe(TEXT),
    previous_status=maybe(vocabulary(CampaignStatus)),
    run_id=maybe(TEXT),
    cycle=maybe(st.integers()),
    next_cycle_at=maybe(times()),
    report_url=maybe(TEXT),
    stats=maybe(DICTS),
)
EVENTS = st.builds(
    Event,
    id=TEXT,
    source=TEXT,
    type=TEXT | st.sampled_from(EventType),
    time=times(),
    provider=TEXT,
    provider_type=TEXT,
    idempotency_key=TEXT,
    received_at=times(),
    data=st.builds(
        EventData,
        contact=st.none() | CONTACTS,
        call=st.none() | CALLS,
        campaign=st.none() | CAMPAIGNS,
        attributes=maybe(DICTS),
    ),
    subject=maybe(TEXT),
    specversion=TEXT,
)
#: every column order, and lists with some columns left out or repeated
COLUMN_LISTS = st.permutations(list(COLUMNS)) | st.lists(
    st.sampled_from(list(COLUMNS)), max_size=12
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=EVENTS, columns=COLUMN_LISTS, report_file=st.none() | TEXT)
@example(
    event=Event(
        id="=1+1",
        source=" -2",
        type=EventType.CALL_ENDED,
        time=datetime(2024, 12, 19, 15, 0, 10, tzinfo=UTC),
        provider="two\r\nlines",
        provider_type="nul\x00",
        idempotency_key="+521234567890",
        received_at=datetime(2024, 12, 19, 20, 30, 10, tzinfo=ZONES[1]),
        data=EventData(
            contact=Contact(phone="+52 1234", name="\u2028"),
            call=Call(
                started_at=datetime(2024, 12, 19, 15, 0, 10, tzinfo=UTC),
                ended_at=datetime(2024, 12, 19, 15, 0, 10, tzinfo=UTC),
                transcript=(TranscriptTurn("agent", "=cmd"), TranscriptTurn("x", "a\nb")),
                attempt_ids=(),
            ),
            campaign=Campaign(stats={}),
            attributes={"a": "\n", "b": datetime(2024, 1, 1, tzinfo=UTC)},
        ),
    ),
    columns=list(COLUMNS),
    report_file="@report.csv",
)
def test_render_row_makes_the_cells_of_the_loop_over_getters(event, columns, report_file):
    cells = render_row(event, columns, report_file=report_file)
    expected = reference_row(event, columns, report_file)
    assert cells == expected
    assert [type(cell) for cell in cells] == [type(cell) for cell in expected]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=EVENTS)
def test_the_public_getters_read_what_they_did(event):
    for name, get in COLUMNS.items():
        assert get(event) is REFERENCE[name](event), name
    assert render_row(event, DEFAULT_COLUMNS) == reference_row(event, DEFAULT_COLUMNS)


def test_a_column_computed_by_another_getter_goes_through_it(monkeypatch, call_ended):
    # a getter that is not a model attribute is called, and its value made a cell as any other
    monkeypatch.setitem(COLUMNS, "talk", lambda e: (e.data.call.duration_seconds, "=x"))
    monkeypatch.setitem(COLUMNS, "nothing", lambda e: None)
    assert render_row(call_ended, ["event_id", "talk", "nothing"]) == [
        "evt_call_ended",
        "45 =x",
        "",
    ]


def test_a_list_of_columns_changed_in_place_is_read_again(call_ended):
    # the last columns' renderer is kept by identity: a list is never taken for the tuple kept
    columns = ["event_id"]
    assert render_row(call_ended, columns) == ["evt_call_ended"]
    columns.append("type")
    assert render_row(call_ended, columns) == ["evt_call_ended", "call.ended"]
    assert render_row(call_ended, ("type",)) == ["call.ended"]
