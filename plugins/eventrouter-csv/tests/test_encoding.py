"""Cells and records as the csv module and the archive's rules make them, however they are batched."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from eventrouter import Contact, EventData
from eventrouter_csv import DEFAULT_COLUMNS, neutralise
from eventrouter_csv.columns import archive_view, encode_row, encode_rows, render_row

#: text rich in what CSV must quote or the archive must rewrite: quotes, delimiters, line
#: breaks of every kind, NUL, formula triggers, non-ASCII letters and line separators
TRICKY = st.text(
    alphabet=st.sampled_from(list('a é,"\r\n\x00=+-@\t\x85\u2028 0123456789')) | st.characters(),
    max_size=12,
)
#: rows of any length (none, one cell, many), some with cells that are not text
ROWS = st.lists(
    st.lists(TRICKY | st.sampled_from(['"', ",", "\r", "\n", ""]), max_size=6)
    | st.lists(TRICKY | st.none() | st.integers() | st.floats(), max_size=3),
    max_size=6,
)


def _csv_module(cells):
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue().encode("utf-8", "replace")


@given(ROWS)
@example([[""], [], ["", ""], ["a,b", 'say "hi"', "x"], ["\r", "\n"], ["", None, 1.5]])
def test_a_batch_is_the_records_one_after_another(rows):
    batch = encode_rows(rows)
    assert batch == b"".join(encode_row(cells) for cells in rows)
    assert batch == b"".join(_csv_module(cells) for cells in rows)


def test_a_batch_keeps_quotes_line_breaks_and_unicode():
    rows = [
        ["plain", 'say "hi"', "a,b", "two\nlines", "Sofía 🎉", ""],
        [""],  # a record of one empty cell is written "" (not a blank line)
        ["\ud800 lone surrogate"],
    ]
    batch = encode_rows(rows)
    assert batch.split(b"\n")[2] == b'""'  # after the first record's two lines
    assert batch.count(b"\n") == 4  # one per record and the quoted cell's own
    back = list(csv.reader(io.StringIO(batch.decode("utf-8"))))
    assert back == [rows[0], [""], ["? lone surrogate"]]
    assert encode_rows([]) == b""


def _one_cell(text):
    """What the archive's rules make of a text: one line, and no formula."""
    return neutralise(re.sub(r"\r\n|\r|\n", " ", text).replace("\x00", ""))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # events are frozen
@given(TRICKY)
@example("two\r\nlines\rand\nmore")
@example("nul\x00 and \u2028 and \x85 and \t")
@example(" =SUM(1)\n")
def test_a_text_cell_is_one_line_and_no_formula(call_ended, text):
    event = call_ended.evolve(data=EventData(contact=Contact(name=text)))
    assert render_row(event, ["contact_name"]) == [_one_cell(text)]


def test_times_are_written_in_utc_and_attributes_as_sorted_json(call_ended):
    zone = timezone(timedelta(hours=-6))
    attributes = {"b": [1, "é"], "a": {"z": None, "when": datetime(2024, 1, 1, tzinfo=UTC)}}
    event = call_ended.evolve(
        time=datetime(2024, 12, 19, 9, 0, 10, tzinfo=zone),
        received_at=datetime(2024, 12, 19, 15, 0, 12, 345678, tzinfo=UTC),
        data=EventData(attributes=attributes),
    )
    columns = ["time", "received_at", "attributes"]
    assert render_row(event, columns) == [
        "2024-12-19T15:00:10+00:00",
        "2024-12-19T15:00:12.345678+00:00",
        json.dumps(attributes, ensure_ascii=False, sort_keys=True, default=str),
    ]


def test_columns_may_be_any_sequence_and_change_between_calls(call_ended):
    by_tuple = render_row(call_ended, DEFAULT_COLUMNS, report_file="r/x.csv")
    by_list = render_row(call_ended, list(DEFAULT_COLUMNS), report_file="r/x.csv")
    assert by_tuple == by_list
    assert by_tuple[DEFAULT_COLUMNS.index("campaign_report_file")] == "r/x.csv"
    assert render_row(call_ended, ["campaign_report_file", "event_id"], report_file="f") == [
        "f",
        "evt_call_ended",
    ]
    assert render_row(call_ended, ["event_id"]) == ["evt_call_ended"]


# -- the archive view: credentials blanked in attributes, raw left out ---------------------------

KEY = st.sampled_from(["token", "user", "data", "items", "0", "1"])
ATTRIBUTES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEY, children, max_size=3),
    max_leaves=12,
).filter(lambda value: isinstance(value, dict))
PATHS = st.lists(st.lists(KEY, min_size=1, max_size=4).map(".".join), max_size=3).map(tuple)


def _suffixes(paths):
    return tuple(
        ".".join(path.split(".")[start:]) for path in paths for start in range(path.count(".") + 1)
    )


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # events are frozen
@given(attributes=ATTRIBUTES, paths=PATHS)
@example(
    attributes={"items": [{"token": "t1"}, {"token": None}, "t3"], "user": {"token": "t4"}},
    paths=("data.items.0.token", "items.1.token", "items.2", "data.user.token", "items.9"),
)
def test_the_archive_view_blanks_each_sensitive_path_and_its_tails(
    campaign_triggered, attributes, paths
):
    event = campaign_triggered.evolve(sensitive=paths, data=EventData(attributes=attributes))
    before = json.dumps(attributes)
    view = archive_view(event)
    # Event.redacted() blanks dotted paths (list indices too): given every path's tails, the
    # attributes it gives are the archive's
    expected = event.evolve(sensitive=_suffixes(paths)).redacted().data.attributes
    assert view.data.attributes == expected
    assert json.dumps(event.data.attributes) == before  # the event is left as it was
    assert view.raw is None if paths else view is event
