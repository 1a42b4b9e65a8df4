"""``eventrouter events`` with filters and ``eventrouter timeline``, on a real SQLite store;
``eventrouter dlq list`` with filters on both stores."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from eventrouter.cli import cli
from eventrouter.events import Call, Campaign, Contact, Event, EventData
from eventrouter.store import Store
from eventrouter.store.redis import RedisStore
from eventrouter.store.sqlite import SQLiteStore
from tests.redis_server import redis_server_fixture  # noqa: F401 - registers the fixture


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "eventrouter.toml"
    path.write_text(
        '[store]\npath = "events.db"\n[sinks.crm]\nplugin = "http"\nurl = "http://127.0.0.1:9/x"\n'
    )
    return path


def provider_event(n: int, provider: str, type: str, *, phone: str | None, campaign: str) -> Event:
    at = datetime(2026, 11, 30, 9, 0, tzinfo=UTC) + timedelta(minutes=n)
    return Event(
        id=f"evt_{n}",
        source=provider,
        type=type,
        time=at,
        provider=provider,
        provider_type=type,
        idempotency_key=f"{provider}-{n}",
        received_at=at,
        data=EventData(
            contact=Contact(phone=phone) if phone else None,
            call=Call(id=f"call-{n}"),
            campaign=Campaign(id=campaign),
        ),
        raw={"note": f"payload {n}", "said": "please call me back" if n == 2 else "bye"},
    )


async def seed(db: Path) -> None:
    store = SQLiteStore(db)
    await store.open()
    try:
        await store.ingest(
            provider_event(1, "altur", "call.ended", phone="+525512345678", campaign="c1"), ["crm"]
        )
        await store.ingest(
            provider_event(2, "exotel", "call.ended", phone="+525512345678", campaign="c2"), ["crm"]
        )
        await store.ingest(
            provider_event(3, "pelcro", "campaign.completed", phone=None, campaign="c1"), []
        )
        await store.ingest(
            provider_event(4, "altur", "call.ended", phone="+14155550100", campaign="c1"), ["crm"]
        )
    finally:
        await store.close()


def test_timeline_of_a_contact_and_a_campaign_across_providers_in_time_order(tmp_path):
    config = write_config(tmp_path)
    asyncio.run(seed(tmp_path / "events.db"))
    runner = CliRunner()

    result = runner.invoke(
        cli, ["timeline", "--config", str(config), "--contact", "+52 55 1234 5678"]
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if not line.startswith(" ")]
    assert [line.split()[3:5] for line in lines] == [["evt_1", "altur"], ["evt_2", "exotel"]]

    result = runner.invoke(
        cli, ["timeline", "--config", str(config), "--campaign", "c1", "--json", "--limit", "2"]
    )
    assert [json.loads(line)["event"]["id"] for line in result.stdout.splitlines()] == [
        "evt_3",
        "evt_4",
    ]
    cursor = result.stderr.split("--cursor ")[1].strip()
    older = runner.invoke(
        cli, ["timeline", "--config", str(config), "--campaign", "c1", "--json", "--cursor", cursor]
    )
    assert [json.loads(line)["event"]["id"] for line in older.stdout.splitlines()] == ["evt_1"]

    both = runner.invoke(cli, ["timeline", "--config", str(config)])
    assert both.exit_code == 2
    assert "give --contact or --campaign" in both.output


def test_events_filters_and_their_errors(tmp_path):
    config = write_config(tmp_path)
    asyncio.run(seed(tmp_path / "events.db"))
    runner = CliRunner()

    def ids(*args: str) -> list[str]:
        result = runner.invoke(cli, ["events", "--config", str(config), "--json", *args])
        assert result.exit_code == 0, result.output
        return [json.loads(line)["event"]["id"] for line in result.stdout.splitlines()]

    assert ids("--text", "CALL ME BACK") == ["evt_2"]
    assert ids("--call", "call-4") == ["evt_4"]
    assert ids("--source", "altur", "--type", "call.*") == ["evt_4", "evt_1"]
    assert ids("--since", "2026-11-30T09:02:00", "--until", "2026-11-30T09:04:00+00:00") == [
        "evt_3",
        "evt_2",
    ]
    assert ids("--key", "pelcro-3") == ["evt_3"]
    assert ids("--state", "pending", "--sink", "crm") == ["evt_4", "evt_2", "evt_1"]

    for args, message in (
        (["--since", "yesterday"], "'yesterday' is neither an ISO 8601 time nor a span"),
        (["--since", "1h", "--until", "2h"], "--since: must be earlier than --until"),
        (["--cursor", "bogus"], "--cursor: not a cursor this server handed out"),
        (["--limit", "0"], "--limit: must be between 1 and 1000"),
        (["--state", "lost"], "'lost' is not one of"),
    ):
        result = runner.invoke(cli, ["events", "--config", str(config), *args])
        assert result.exit_code != 0, args
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def cli_store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Callable[[], Store]]:
    """A config whose store is SQLite or Redis, and a way to open that same store."""
    path = tmp_path / "eventrouter.toml"
    sink = '[sinks.crm]\nplugin = "http"\nurl = "http://127.0.0.1:9/x"\n'
    if request.param == "redis":
        url = request.getfixturevalue("redis_server").url
        path.write_text(f'[store]\nbackend = "redis"\nurl = "{url}"\nkey_prefix = "dlq"\n{sink}')
        return path, lambda: RedisStore(url, key_prefix="dlq")
    path.write_text(f'[store]\npath = "events.db"\n{sink}')
    return path, lambda: SQLiteStore(tmp_path / "events.db")


async def seed_dead_letters(store: Store) -> None:
    """evt_1 (altur, +52...) and evt_2 (exotel, +52..., campaign c2) dead for crm; evt_4 pending."""
    await store.open()
    try:
        for n, provider, phone, campaign in (
            (1, "altur", "+525512345678", "c1"),
            (2, "exotel", "+525512345678", "c2"),
            (4, "altur", "+14155550100", "c1"),
        ):
            event = provider_event(n, provider, "call.ended", phone=phone, campaign=campaign)
            await store.ingest(event, ["crm"])
        for delivery in await store.claim("crm", limit=2, lease=30):
            await store.dead_letter(delivery, error=f"HTTP 410: gone ({delivery.event.id})")
    finally:
        await store.close()


def test_dlq_list_takes_the_query_filters_on_both_stores(cli_store):
    config, open_store = cli_store
    asyncio.run(seed_dead_letters(open_store()))
    runner = CliRunner()

    def dlq_list(*args: str) -> tuple[list[str], str]:
        result = runner.invoke(cli, ["dlq", "list", "--config", str(config), *args])
        assert result.exit_code == 0, result.output
        return result.stdout.splitlines(), result.stderr

    lines, _ = dlq_list()
    assert [line.split()[3:6] for line in lines] == [["evt_2", "->", "crm"], ["evt_1", "->", "crm"]]
    assert lines[1].endswith(" evt_1 -> crm (call.ended, 1 attempt): HTTP 410: gone (evt_1)")
    assert [line.split()[3] for line in dlq_list("--source", "altur")[0]] == ["evt_1"]
    assert [line.split()[3] for line in dlq_list("--contact", "+52 55 1234 5678")[0]] == [
        "evt_2",
        "evt_1",
    ]
    [letter] = dlq_list("--campaign", "c2", "--sink", "crm", "--json")[0]
    assert json.loads(letter) | {"dead_at": None} == {
        "event_id": "evt_2",
        "source": "exotel",
        "type": "call.ended",
        "sink": "crm",
        "attempts": 1,
        "reason": "HTTP 410: gone (evt_2)",
        "dead_at": None,
    }
    assert dlq_list("--since", "2026-11-30T09:03:00+00:00")[0] == ["no dead letters"]
    assert dlq_list("--sink", "other")[0] == ["no dead letters"]
    # pages of events, newest first, as `events` pages them
    first, more = dlq_list("--limit", "1")
    assert [line.split()[3] for line in first] == ["evt_2"]
    older, _ = dlq_list("--cursor", more.split("--cursor ")[1].strip())
    assert [line.split()[3] for line in older] == ["evt_1"]

    for args, message in (
        (["--state", "pending"], "No such option '--state'"),
        (["--contact", "nobody"], "--contact: 'nobody' is neither an email nor a phone number"),
        (["--limit", "0"], "--limit: must be between 1 and 1000"),
    ):
        result = runner.invoke(cli, ["dlq", "list", "--config", str(config), *args])
        assert result.exit_code != 0, args
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output
