"""The example config archives every sample payload, and its commented Slack and CRM tables work.

(The Quickstart itself, served by `make serve` on a fresh clone, is tests/test_newcomer.py.)"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from click.testing import CliRunner

from eventrouter.cli import cli
from eventrouter.store.base import DeliveryState

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SOURCE_OF = {"altur": "altur", "exotel": "exotel", "pelcro": "pelcro", "standard": "webhooks"}


async def test_every_sample_payload_is_accepted_and_archived(make_router, tmp_path):
    document = tomllib.loads((EXAMPLES / "eventrouter.toml").read_text())
    document["store"]["path"] = str(tmp_path / "events.db")
    document["sinks"]["archive"]["directory"] = str(tmp_path / "archive")
    router = await make_router(document, environ={})
    payloads = sorted((EXAMPLES / "payloads").iterdir())
    assert len(payloads) >= 8
    accepted = []
    for payload in payloads:
        source = SOURCE_OF[payload.name.split("-", 1)[0]]
        content_type = (
            "application/json" if payload.suffix == ".json" else "application/x-www-form-urlencoded"
        )
        status, answer = await router.post(source, payload.read_bytes(), content_type=content_type)
        assert (status, answer["status"]) == (200, "accepted"), (payload.name, answer)
        accepted.append(answer["event_id"])

    def archived() -> list[dict[str, str]]:
        rows: list[dict[str, str]] = []
        for path in (tmp_path / "archive").glob("*.csv"):
            text = path.read_text()
            if text.endswith("\n"):  # skip a file caught in the middle of an append
                rows.extend(csv.DictReader(io.StringIO(text)))
        return rows

    rows: list[dict[str, str]] = []
    for _ in range(200):  # at most 10 s
        rows = archived()
        if len(rows) >= len(accepted):
            break
        await asyncio.sleep(0.05)
    assert sorted(row["event_id"] for row in rows) == sorted(accepted)
    types = {row["type"] for row in rows}
    assert {
        "call.ended",
        "campaign.triggered",
        "campaign.completed",
        "campaign.cycle_completed",
        "invoice.paid",
    } <= types
    assert not any(
        "eyJhbGciOi" in value for row in rows for value in row.values()
    )  # Pelcro's magic link token


# -- the example's Slack alert rules, end to end ----------------------------------------------

PLUGINS = EXAMPLES.parent / "plugins"
ALTUR_FIXTURES = PLUGINS / "eventrouter-altur" / "tests" / "fixtures"
EXOTEL_FIXTURES = PLUGINS / "eventrouter-exotel" / "tests" / "fixtures"
WEBHOOK_PATH = "/services/T0000000/B0000000/XXXXXXXXXXXXXXXXXXXXXXXX"
# a commented line of a table to enable: a table header, or a key (never a prose comment)
COMMENTED_TABLE_LINE = re.compile(r"^# (?=\[\[routes\]\]|\[sinks\.|[a-z_]+ = )", re.M)


def example_with_every_table() -> dict[str, Any]:
    """examples/eventrouter.toml with its commented Slack and CRM tables (and routes) enabled."""
    text = (EXAMPLES / "eventrouter.toml").read_text()
    enabled = COMMENTED_TABLE_LINE.sub("", text)
    return tomllib.loads(enabled)


@pytest.fixture
async def stand_ins() -> AsyncIterator[dict[str, Any]]:
    """Slack's incoming webhook and HubSpot's API stood in for on 127.0.0.1.

    Slack answers ``ok`` as its incoming webhooks do; HubSpot answers 503 (nothing here is a
    CRM test: the stand-in only keeps the CRM sink off the network).
    """
    slack: list[dict[str, Any]] = []
    hubspot: list[str] = []
    arrived = asyncio.Event()

    async def webhook(request: web.Request) -> web.Response:
        slack.append(await request.json())
        arrived.set()
        if request.path != WEBHOOK_PATH:
            return web.Response(status=404, text="no_service")
        return web.Response(text="ok", content_type="text/html")

    async def crm(request: web.Request) -> web.Response:
        hubspot.append(request.path)
        return web.json_response({"status": "error", "message": "stand-in"}, status=503)

    app = web.Application()
    app.router.add_post("/services/{tail:.+}", webhook)
    app.router.add_route("*", "/{tail:.*}", crm)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    try:
        yield {
            "slack": slack,
            "slack_arrived": arrived,
            "webhook_url": url + WEBHOOK_PATH,
            "hubspot": hubspot,
            "hubspot_url": url,
        }
    finally:
        await server.close()


def _altur_cycle(event_id: str, *, status: str, next_cycle_at: str | None) -> dict[str, Any]:
    payload = json.loads((ALTUR_FIXTURES / "campaign_cycle_completed.json").read_text())
    payload["event_id"] = event_id
    payload["data"]["campaign"]["status"] = status
    payload["data"]["next_cycle_at"] = next_cycle_at
    return payload


def test_the_commented_tables_are_the_slack_and_crm_ones(tmp_path):
    document = example_with_every_table()
    assert document["sinks"]["alerts"]["plugin"] == "slack"
    assert document["sinks"]["alerts"]["webhook_url"] == "${SLACK_WEBHOOK_URL}"
    assert document["sinks"]["hubspot"]["plugin"] == "crm"
    assert document["sinks"]["hubspot"]["token"] == "${HUBSPOT_TOKEN}"
    assert [route["sinks"] for route in document["routes"]] == [
        ["archive"],
        ["alerts"],
        ["alerts"],
        ["hubspot"],
    ]
    # enabled, with the variables they ask for set, the example still validates
    config = tmp_path / "eventrouter.toml"
    config.write_text(COMMENTED_TABLE_LINE.sub("", (EXAMPLES / "eventrouter.toml").read_text()))
    result = CliRunner().invoke(
        cli,
        ["check", "--config", str(config)],
        env={"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x", "HUBSPOT_TOKEN": "x"},
    )
    assert result.exit_code == 0, result.output
    assert "4 sources, 3 sinks, 4 routes, sqlite store" in result.output


async def test_example_alert_rules_reach_slack(make_router, tmp_path, stand_ins):
    document = example_with_every_table()
    document["store"]["path"] = str(tmp_path / "events.db")
    document["sinks"]["archive"]["directory"] = str(tmp_path / "archive")
    document["sinks"]["hubspot"]["api_base"] = stand_ins["hubspot_url"]
    router = await make_router(
        document,
        environ={
            "SLACK_WEBHOOK_URL": stand_ins["webhook_url"],
            "HUBSPOT_TOKEN": "pat-na1-00000000-0000-0000-0000-000000000000",
        },
    )
    sent: dict[str, tuple[str, bytes, str]] = {
        # seed 000: a cycle completed, no next cycle, the campaign not finished: stalled
        "altur stalled": (
            "altur",
            json.dumps(
                _altur_cycle("evt_stalled000000000001", status="cooldown", next_cycle_at=None)
            ).encode(),
            "application/json",
        ),
        "altur next cycle scheduled": (
            "altur",
            json.dumps(
                _altur_cycle(
                    "evt_scheduled0000000001",
                    status="cooldown",
                    next_cycle_at="2026-06-09T09:00:00.000000-06:00",
                )
            ).encode(),
            "application/json",
        ),
        "altur campaign finished": (
            "altur",
            json.dumps(
                _altur_cycle("evt_finished000000000001", status="finished", next_cycle_at=None)
            ).encode(),
            "application/json",
        ),
        "exotel failed": (
            "exotel",
            (EXOTEL_FIXTURES / "campaign_status_failed.json").read_bytes(),
            "application/json",
        ),
        "exotel completed": (
            "exotel",
            (EXOTEL_FIXTURES / "campaign_status_completed.json").read_bytes(),
            "application/json",
        ),
        "exotel canceled": (
            "exotel",
            (EXOTEL_FIXTURES / "campaign_status_canceled.json").read_bytes(),
            "application/json",
        ),
    }
    alerting = {"altur stalled", "exotel failed"}
    event_ids: dict[str, str] = {}
    for name, (source, body, content_type) in sent.items():
        status, answer = await router.post(source, body, content_type=content_type)
        assert (status, answer["status"]) == (200, "accepted"), (name, answer)
        event_ids[name] = answer["event_id"]

    # the routes are decided as each event is stored: only the two alerts have a Slack delivery
    for name, event_id in event_ids.items():
        stored = await router.store.get_event(event_id)
        assert stored is not None, name
        sinks = {delivery.sink for delivery in stored.deliveries}
        assert "archive" in sinks, name
        assert ("alerts" in sinks) is (name in alerting), (name, sinks)

    async def alerts_done() -> bool:
        for name in alerting:
            stored = await router.store.get_event(event_ids[name])
            assert stored is not None
            (alert,) = [d for d in stored.deliveries if d.sink == "alerts"]
            assert alert.state != DeliveryState.DEAD, (name, alert)
            if alert.state != DeliveryState.DONE:
                return False
        return True

    async with asyncio.timeout(15):  # two messages, paced one a second
        while not await alerts_done():
            await asyncio.sleep(0.05)

    messages = stand_ins["slack"]
    assert len(messages) == 2, messages
    headers = sorted(message["blocks"][0]["text"]["text"] for message in messages)
    assert headers == [
        ":warning: Campaign stalled: Q2 Reactivation",
        ":x: Campaign failed: campaign camp_def456",
    ]
    for message in messages:
        context = message["blocks"][-1]["elements"][0]["text"]
        assert any(event_ids[name] in context for name in alerting), context
    stalled = next(m for m in messages if "stalled" in m["blocks"][0]["text"]["text"])
    assert "no next cycle is scheduled" in stalled["text"]
    assert event_ids["altur stalled"] in stalled["blocks"][-1]["elements"][0]["text"]
