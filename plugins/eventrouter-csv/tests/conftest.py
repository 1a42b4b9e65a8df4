"""Fixtures of the csv sink tests: a started sink factory, events of every normalised kind, readers."""

from __future__ import annotations

import csv
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest

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
    SinkContext,
    TranscriptTurn,
)
from eventrouter.testing import structure_options
from eventrouter_csv import DEFAULT_COLUMNS, CSVOptions, CSVSink

IST = timezone(timedelta(hours=5, minutes=30))
RECEIVED = datetime(2024, 12, 19, 15, 0, 12, 345678, tzinfo=UTC)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def make_sink(
    tmp_path: Path, http: aiohttp.ClientSession
) -> AsyncIterator[Callable[..., Any]]:
    """``await make_sink(**options)``: a started csv sink archiving under tmp_path/archive."""
    sinks: list[CSVSink] = []

    async def factory(**options: Any) -> CSVSink:
        options.setdefault("directory", "archive")
        sink = CSVSink("archive", structure_options(options, CSVOptions))
        assert list(sink.check()) == []
        await sink.start(
            SinkContext(http=http, base_dir=tmp_path, logger=logging.getLogger("test.csv"))
        )
        sinks.append(sink)
        return sink

    yield factory
    for sink in sinks:
        await sink.close()


@pytest.fixture
def blank_row() -> dict[str, str]:
    """A row of the default columns with every cell empty."""
    return dict.fromkeys(DEFAULT_COLUMNS, "")


@pytest.fixture
def read_rows() -> Callable[[Path], list[dict[str, str]]]:
    """Read a CSV file back with the csv module: its rows as dicts (header checked once)."""

    def read(path: Path) -> list[dict[str, str]]:
        with open(path, newline="", encoding="utf-8") as file:
            return list(csv.DictReader(file))

    return read


def _event(**fields: Any) -> Event:
    values: dict[str, Any] = {
        "source": "altur",
        "provider": "altur",
        "received_at": RECEIVED,
        "time": RECEIVED,
        "raw": {"only_in_raw": "raw-marker-7f3a"},
    }
    values.update(fields)
    return Event(**values)


@pytest.fixture
def call_ended() -> Event:
    """An Altur on_call_end: contact, a full call and a transcript."""
    return _event(
        id="evt_call_ended",
        type=EventType.CALL_ENDED,
        provider_type="on_call_end",
        idempotency_key="cll_gBoLtd02pUI50QwXkFjB",
        time=datetime(2024, 12, 19, 20, 30, 10, tzinfo=IST),
        subject="cll_gBoLtd02pUI50QwXkFjB",
        data=EventData(
            contact=Contact(phone="+521234567890", name="Sofía Pérez", external_id="user_12345"),
            call=Call(
                id="cll_gBoLtd02pUI50QwXkFjB",
                direction=CallDirection.OUTBOUND,
                status=CallStatus.COMPLETED,
                provider_status="ended",
                answered_by=AnsweredBy.HUMAN,
                started_at=datetime(2024, 12, 19, 15, 0, 10, tzinfo=UTC),
                ended_at=datetime(2024, 12, 19, 15, 0, 55, tzinfo=UTC),
                duration_seconds=45,
                recording_url="https://api.altur.io/api/v1.0/call/cll_gB/recording",
                transcript=(
                    TranscriptTurn("agent", "Hello, am I speaking with Sofía?"),
                    TranscriptTurn("contact", "Yes,\nwho is this?"),
                ),
                from_number="+14155550100",
                to_number="+521234567890",
            ),
            attributes={"tags": ["payment_promise", "call_later"]},
        ),
    )


@pytest.fixture
def attempts_exhausted() -> Event:
    """An Exotel call schedule callback: every attempt failed."""
    return _event(
        id="evt_exhausted",
        source="exotel",
        provider="exotel",
        type=EventType.CALL_ATTEMPTS_EXHAUSTED,
        provider_type="call_schedule",
        idempotency_key="camp_1:+919876543210",
        data=EventData(
            contact=Contact(phone="+919876543210"),
            call=Call(
                id="sid_3",
                status=CallStatus.NO_ANSWER,
                provider_status="no-answer",
                attempt_ids=("sid_1", "sid_2", "sid_3"),
            ),
            campaign=Campaign(id="camp_1"),
        ),
    )


@pytest.fixture
def campaign_completed() -> Event:
    """An Exotel campaign status callback with a report URL."""
    return _event(
        id="evt_campaign_completed",
        source="exotel",
        provider="exotel",
        type=EventType.CAMPAIGN_COMPLETED,
        provider_type="campaign_status",
        idempotency_key="camp_42:Completed",
        data=EventData(
            campaign=Campaign(
                id="camp_42",
                name="Diwali reminders",
                status=CampaignStatus.COMPLETED,
                provider_status="Completed",
                report_url="https://api.exotel.com/v2/accounts/x/campaigns/camp_42/report.csv",
            )
        ),
    )


@pytest.fixture
def cycle_completed() -> Event:
    """An Altur campaign.cycle_completed: cycle number, next cycle and stats."""
    return _event(
        id="evt_cycle",
        type=EventType.CAMPAIGN_CYCLE_COMPLETED,
        provider_type="campaign.cycle_completed",
        idempotency_key="evt_altur_1",
        data=EventData(
            campaign=Campaign(
                id="cmp_9",
                name="Cobranza",
                status=CampaignStatus.COOLDOWN,
                provider_status="cooldown",
                cycle=3,
                next_cycle_at=datetime(2024, 12, 20, 9, 0, tzinfo=IST),
                stats={"calls": 120, "answerRate": 0.5},
            )
        ),
    )


@pytest.fixture
def status_changed() -> Event:
    """An Altur campaign.status_changed with the previous status."""
    return _event(
        id="evt_status",
        type=EventType.CAMPAIGN_STATUS_CHANGED,
        provider_type="campaign.status_changed",
        idempotency_key="evt_altur_2",
        data=EventData(
            campaign=Campaign(
                id="cmp_9",
                name="Cobranza",
                status=CampaignStatus.PAUSED,
                provider_status="inactive",
                previous_status=CampaignStatus.ACTIVE,
            )
        ),
    )


@pytest.fixture
def campaign_triggered() -> Event:
    """A Pelcro campaign.triggered whose magic link token is a credential."""
    return _event(
        id="evt_triggered",
        source="pelcro",
        provider="pelcro",
        type=EventType.CAMPAIGN_TRIGGERED,
        provider_type="campaign.triggered",
        idempotency_key="evt_pelcro_1",
        subject="sub_77",
        sensitive=("data.magic_link_token",),
        raw={"data": {"magic_link_token": "mlt_SECRET_0001"}, "only_in_raw": "raw-marker-7f3a"},
        data=EventData(
            contact=Contact(email="ana@example.com", name="Ana", external_id="user_5"),
            campaign=Campaign(id="542", name="Win-back", run_id="run_8"),
            attributes={
                "magic_link_token": "mlt_SECRET_0001",
                "data": {"magic_link_token": "mlt_SECRET_0001"},
                "plan": "gold",
            },
        ),
    )
