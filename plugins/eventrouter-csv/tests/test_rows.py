"""Rows of every normalised kind, read back with the csv module and with pandas."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from eventrouter_csv import DEFAULT_COLUMNS, neutralise
from eventrouter_csv.columns import archive_view, encode_row, render_row


@pytest.fixture
def expected(
    blank_row,
    call_ended,
    attempts_exhausted,
    campaign_completed,
    cycle_completed,
    status_changed,
    campaign_triggered,
):
    """The events in delivery order and the row each one must give."""
    envelope = {"received_at": "2024-12-19T15:00:12.345678+00:00"}
    rows = [
        {
            **blank_row,
            **envelope,
            "event_id": "evt_call_ended",
            "time": "2024-12-19T15:00:10+00:00",
            "source": "altur",
            "provider": "altur",
            "type": "call.ended",
            "provider_type": "on_call_end",
            "subject": "cll_gBoLtd02pUI50QwXkFjB",
            "contact_phone": "+521234567890",
            "contact_name": "Sofía Pérez",
            "contact_external_id": "user_12345",
            "call_id": "cll_gBoLtd02pUI50QwXkFjB",
            "call_direction": "outbound",
            "call_status": "completed",
            "call_provider_status": "ended",
            "call_answered_by": "human",
            "call_started_at": "2024-12-19T15:00:10+00:00",
            "call_ended_at": "2024-12-19T15:00:55+00:00",
            "call_duration_seconds": "45",
            "call_from_number": "+14155550100",
            "call_to_number": "+521234567890",
            "call_recording_url": "https://api.altur.io/api/v1.0/call/cll_gB/recording",
            "call_transcript": "agent: Hello, am I speaking with Sofía? | contact: Yes, who is this?",
            "attributes": '{"tags": ["payment_promise", "call_later"]}',
        },
        {
            **blank_row,
            **envelope,
            "event_id": "evt_exhausted",
            "time": "2024-12-19T15:00:12.345678+00:00",
            "source": "exotel",
            "provider": "exotel",
            "type": "call.attempts_exhausted",
            "provider_type": "call_schedule",
            "contact_phone": "+919876543210",
            "call_id": "sid_3",
            "call_status": "no_answer",
            "call_provider_status": "no-answer",
            "call_attempt_ids": "sid_1 sid_2 sid_3",
            "campaign_id": "camp_1",
            "campaign_status": "unknown",
        },
        {
            **blank_row,
            **envelope,
            "event_id": "evt_campaign_completed",
            "time": "2024-12-19T15:00:12.345678+00:00",
            "source": "exotel",
            "provider": "exotel",
            "type": "campaign.completed",
            "provider_type": "campaign_status",
            "campaign_id": "camp_42",
            "campaign_name": "Diwali reminders",
            "campaign_status": "completed",
            "campaign_provider_status": "Completed",
            "campaign_report_url": "https://api.exotel.com/v2/accounts/x/campaigns/camp_42/report.csv",
        },
        {
            **blank_row,
            **envelope,
            "event_id": "evt_cycle",
            "time": "2024-12-19T15:00:12.345678+00:00",
            "source": "altur",
            "provider": "altur",
            "type": "campaign.cycle_completed",
            "provider_type": "campaign.cycle_completed",
            "campaign_id": "cmp_9",
            "campaign_name": "Cobranza",
            "campaign_status": "cooldown",
            "campaign_provider_status": "cooldown",
            "campaign_cycle": "3",
            "campaign_next_cycle_at": "2024-12-20T03:30:00+00:00",
            "campaign_stats": '{"answerRate": 0.5, "calls": 120}',
        },
        {
            **blank_row,
            **envelope,
            "event_id": "evt_status",
            "time": "2024-12-19T15:00:12.345678+00:00",
            "source": "altur",
            "provider": "altur",
            "type": "campaign.status_changed",
            "provider_type": "campaign.status_changed",
            "campaign_id": "cmp_9",
            "campaign_name": "Cobranza",
            "campaign_status": "paused",
            "campaign_provider_status": "inactive",
            "campaign_previous_status": "active",
        },
        {
            **blank_row,
            **envelope,
            "event_id": "evt_triggered",
            "time": "2024-12-19T15:00:12.345678+00:00",
            "source": "pelcro",
            "provider": "pelcro",
            "type": "campaign.triggered",
            "provider_type": "campaign.triggered",
            "subject": "sub_77",
            "contact_email": "ana@example.com",
            "contact_name": "Ana",
            "contact_external_id": "user_5",
            "campaign_id": "542",
            "campaign_name": "Win-back",
            "campaign_status": "unknown",
            "campaign_run_id": "run_8",
            "attributes": (
                '{"data": {"magic_link_token": "[redacted]"}, '
                '"magic_link_token": "[redacted]", "plan": "gold"}'
            ),
        },
    ]
    events = [
        call_ended,
        attempts_exhausted,
        campaign_completed,
        cycle_completed,
        status_changed,
        campaign_triggered,
    ]
    return events, rows


async def test_every_kind_reads_back_with_the_csv_module(make_sink, tmp_path, read_rows, expected):
    events, rows = expected
    sink = await make_sink()
    for event in events:
        await sink.deliver(event)
    path = tmp_path / "archive" / "2024-12-19.csv"
    lines = path.read_bytes().split(b"\n")
    assert lines[0].decode() == ",".join(DEFAULT_COLUMNS)
    assert len(lines) == len(events) + 2  # header, rows, and the empty string after the last \n
    assert lines[-1] == b""
    got = read_rows(path)
    assert len(got) == len(rows)
    for row, want in zip(got, rows, strict=True):
        assert list(row) == list(DEFAULT_COLUMNS)
        for column in DEFAULT_COLUMNS:
            assert row[column] == want[column], (want["event_id"], column)


async def test_every_kind_reads_back_with_pandas(make_sink, tmp_path, expected):
    events, rows = expected
    sink = await make_sink()
    for event in events:
        await sink.deliver(event)
    path = tmp_path / "archive" / "2024-12-19.csv"

    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(frame.columns) == list(DEFAULT_COLUMNS)
    assert len(frame) == len(rows)
    for column in DEFAULT_COLUMNS:
        assert list(frame[column]) == [row[column] for row in rows], column

    # the default, type-guessing read also loads cleanly; numbers come back as numbers
    guessed = pd.read_csv(path, dtype={"contact_phone": str, "call_to_number": str})
    assert guessed.shape == (len(rows), len(DEFAULT_COLUMNS))
    assert guessed["call_duration_seconds"].iloc[0] == 45
    assert guessed["call_duration_seconds"].isna().sum() == len(rows) - 1
    assert guessed["campaign_cycle"].iloc[3] == 3
    assert guessed["contact_phone"].iloc[0] == "+521234567890"
    received = pd.to_datetime(guessed["received_at"], utc=True)
    assert received.iloc[0] == pd.Timestamp("2024-12-19T15:00:12.345678Z")
    assert json.loads(guessed["campaign_stats"].iloc[3]) == {"calls": 120, "answerRate": 0.5}


async def test_configured_columns_are_written_in_their_order(
    make_sink, tmp_path, read_rows, call_ended
):
    sink = await make_sink(columns=["type", "event_id", "idempotency_key", "call_duration_seconds"])
    await sink.deliver(call_ended)
    path = tmp_path / "archive" / "2024-12-19.csv"
    assert path.read_text().splitlines()[0] == "type,event_id,idempotency_key,call_duration_seconds"
    assert read_rows(path) == [
        {
            "type": "call.ended",
            "event_id": "evt_call_ended",
            "idempotency_key": "cll_gBoLtd02pUI50QwXkFjB",
            "call_duration_seconds": "45",
        }
    ]


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(1+1)", "'@SUM(1+1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("  =1+1", "'  =1+1"),
        ("+521234567890", "+521234567890"),
        ("+52 1234 567890", "'+52 1234 567890"),
        ("+", "'+"),
        ("Ana = Bob", "Ana = Bob"),
        ("", ""),
    ],
)
def test_neutralise(value, cell):
    assert neutralise(value) == cell


async def test_formula_cells_are_neutralised_in_the_file(
    make_sink, tmp_path, read_rows, call_ended
):
    contact = call_ended.data.contact.__class__(
        phone="+521234567890",
        email="@SUM(1+1)@example.com",
        name='=HYPERLINK("http://evil","x")',
        external_id="-10",
    )
    call = call_ended.data.call.__class__(
        id="\t=cmd", provider_status="\r\n=1+1", from_number="+52 1234", to_number="+14155550100"
    )
    event = call_ended.evolve(
        subject="+cmd|' /C calc'!A0",
        data=call_ended.data.__class__(contact=contact, call=call),
    )
    sink = await make_sink()
    await sink.deliver(event)
    (row,) = read_rows(tmp_path / "archive" / "2024-12-19.csv")
    assert row["subject"] == "'+cmd|' /C calc'!A0"
    assert row["contact_phone"] == "+521234567890"
    assert row["contact_email"] == "'@SUM(1+1)@example.com"
    assert row["contact_name"] == '\'=HYPERLINK("http://evil","x")'
    assert row["contact_external_id"] == "'-10"
    assert row["call_id"] == "'\t=cmd"
    assert row["call_provider_status"] == "' =1+1"  # line breaks become a space, then neutralised
    assert row["call_from_number"] == "'+52 1234"
    assert row["call_to_number"] == "+14155550100"
    assert row["call_transcript"] == ""


async def test_credentials_and_raw_are_never_written(make_sink, tmp_path, campaign_triggered):
    sink = await make_sink()
    # as with include_sensitive = true: the sink gets the event unredacted
    await sink.deliver(campaign_triggered)
    text = (tmp_path / "archive" / "2024-12-19.csv").read_text()
    assert "mlt_SECRET_0001" not in text
    assert "raw-marker-7f3a" not in text
    # the core's redacted copy archives the same row
    await sink.deliver(campaign_triggered.redacted())
    lines = (tmp_path / "archive" / "2024-12-19.csv").read_text().splitlines()
    assert lines[1] == lines[2]


def test_archive_view_blanks_shallower_attribute_copies(campaign_triggered):
    event = campaign_triggered.evolve(
        sensitive=("payload.user.token",),
        data=campaign_triggered.data.__class__(
            attributes={"user": {"token": "t1", "name": "Ana"}, "token": "t2", "other": None}
        ),
    )
    view = archive_view(event)
    assert view.data.attributes == {
        "user": {"token": "[redacted]", "name": "Ana"},
        "token": "[redacted]",
        "other": None,
    }
    assert event.data.attributes["token"] == "t2"  # the event itself is untouched


def test_every_record_is_one_line(call_ended):
    line = encode_row(render_row(call_ended, DEFAULT_COLUMNS))
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert b"\r" not in line
