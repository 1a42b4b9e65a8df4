"""The ``teams`` sink: discovery, the card it posts, how it reads Teams' answers, and end to end."""

from __future__ import annotations

import asyncio
import logging
import tomllib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from eventrouter import (
    Call,
    CallStatus,
    Campaign,
    CampaignStatus,
    ConfigError,
    Contact,
    Event,
    EventData,
    PermanentError,
    RetryableError,
    SinkContext,
)
from eventrouter.testing import installed_types
from eventrouter_teams import TeamsOptions, TeamsSink, adaptive_card

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CARD = "application/vnd.microsoft.card.adaptive"


def test_plugin_is_installed_and_discovered():
    assert "teams" in installed_types().sinks


def make_event(data: EventData | None = None, **changes: Any) -> Event:
    """A ``call.ended`` event from source ``calls``; ``changes`` override any field."""
    fields: dict[str, Any] = {
        "id": "evt_0001",
        "source": "calls",
        "type": "call.ended",
        "time": datetime(2025, 3, 1, 10, 4, 5, tzinfo=UTC),
        "provider": "altur",
        "provider_type": "call.completed",
        "idempotency_key": "call-77",
        "received_at": datetime(2025, 3, 1, 10, 4, 6, tzinfo=UTC),
        "data": data or EventData(),
        "raw": {},
    }
    return Event(**{**fields, **changes})


def message(*body: dict[str, Any]) -> dict[str, Any]:
    """The Teams message wrapping one Adaptive Card with ``body``."""
    card = {"type": "AdaptiveCard", "version": "1.4", "body": list(body)}
    return {"type": "message", "attachments": [{"contentType": CARD, "content": card}]}


def heading(text: str) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "weight": "Bolder", "size": "Medium", "wrap": True}


def facts(*rows: tuple[str, str]) -> dict[str, Any]:
    return {"type": "FactSet", "facts": [{"title": title, "value": value} for title, value in rows]}


FULL = EventData(
    contact=Contact(phone="+5215512345678", name="Ana López", email="ana@example.com"),
    call=Call(id="c-1", status=CallStatus.COMPLETED, duration_seconds=185),
    campaign=Campaign(id="k-9", name="Renewals", status=CampaignStatus.ACTIVE),
)


async def test_posts_the_card_with_every_normalised_part(fake_teams, start_sink):
    sink = await start_sink(webhook_url=fake_teams.url, title="Calls")

    await sink.deliver(make_event(FULL))

    [request] = fake_teams.received
    assert request.path_qs == f"{fake_teams.path}?{fake_teams.query}"
    assert request.content_type == "application/json"
    assert request.json == message(
        heading("Calls"),
        facts(
            ("Event", "call.ended"),
            ("Source", "calls"),
            ("Time", "2025-03-01 10:04:05 UTC"),
            ("Contact", "Ana López"),
            ("Phone", "+5215512345678"),
            ("Call status", "completed"),
            ("Duration", "3m 05s"),
            ("Campaign", "Renewals"),
            ("Campaign status", "active"),
        ),
    )


def test_card_shows_only_the_parts_present():
    data = EventData(
        contact=Contact(phone="+14155550100"),
        call=Call(duration_seconds=42),
        campaign=Campaign(status=CampaignStatus.PAUSED),
    )
    mexico = timezone(timedelta(hours=-6))
    event = make_event(data, time=datetime(2025, 3, 1, 4, 4, 5, tzinfo=mexico), source="dialer")

    assert adaptive_card(event, title="eventrouter") == message(
        heading("eventrouter"),
        facts(
            ("Event", "call.ended"),
            ("Source", "dialer"),
            ("Time", "2025-03-01 10:04:05 UTC"),
            ("Phone", "+14155550100"),
            ("Duration", "42s"),
            ("Campaign status", "paused"),
        ),
    )


def test_card_of_an_event_without_normalised_parts():
    event = make_event(type="invoice.paid", source="billing")

    assert adaptive_card(event, title="Billing") == message(
        heading("Billing"),
        facts(
            ("Event", "invoice.paid"), ("Source", "billing"), ("Time", "2025-03-01 10:04:05 UTC")
        ),
    )


async def test_facts_false_posts_a_one_line_summary(fake_teams, start_sink):
    sink = await start_sink(webhook_url=fake_teams.url, facts=False)

    await sink.deliver(make_event(FULL))

    [request] = fake_teams.received
    assert request.json == message(
        heading("eventrouter"),
        {
            "type": "TextBlock",
            "text": "call.ended from calls at 2025-03-01 10:04:05 UTC",
            "wrap": True,
        },
    )


@pytest.mark.parametrize(
    ("status", "body"),
    [
        pytest.param(202, "", id="workflows-202"),
        pytest.param(200, "1", id="legacy-200"),
    ],
)
async def test_success_answers_are_delivered(fake_teams, start_sink, status, body):
    fake_teams.reply(status, body)
    sink = await start_sink(webhook_url=fake_teams.url)

    await sink.deliver(make_event())

    assert len(fake_teams.received) == 1
    assert fake_teams.replies == []


# Legacy connectors answer 200 and put Teams' real status in the body.
LEGACY_429 = "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429 with ContextId tcid=0"
LEGACY_413 = "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 413 with ContextId tcid=0"
LEGACY_DOWN = (
    "Webhook message delivery failed with error: Error contacting Microsoft Teams endpoint"
)


@pytest.mark.parametrize(
    ("reply", "error", "text", "retry_after"),
    [
        pytest.param((400, "Bad payload"), PermanentError, "HTTP 400: Bad payload", None, id="400"),
        pytest.param((404, "no flow"), PermanentError, "HTTP 404: no flow", None, id="404"),
        pytest.param(
            (429, "slow down", {"Retry-After": "7"}),
            RetryableError,
            "HTTP 429: slow down",
            7.0,
            id="429+Retry-After",
        ),
        pytest.param((500, "oops"), RetryableError, "HTTP 500: oops", None, id="500"),
        pytest.param(
            (503, "busy", {"Retry-After": "120"}),
            RetryableError,
            "HTTP 503: busy",
            120.0,
            id="503+Retry-After",
        ),
        pytest.param(
            (200, LEGACY_429), RetryableError, f"HTTP 429: {LEGACY_429}", None, id="200-legacy-429"
        ),
        pytest.param(
            (200, LEGACY_413), PermanentError, f"HTTP 413: {LEGACY_413}", None, id="200-legacy-413"
        ),
        pytest.param(
            (200, LEGACY_DOWN),
            RetryableError,
            f"HTTP 502: {LEGACY_DOWN}",
            None,
            id="200-legacy-down",
        ),
    ],
)
async def test_unsuccessful_answers_are_classified(
    fake_teams, start_sink, reply, error, text, retry_after
):
    fake_teams.reply(*reply)
    sink = await start_sink(webhook_url=fake_teams.url)

    with pytest.raises(error) as caught:
        await sink.deliver(make_event())

    assert type(caught.value) is error
    assert caught.value.message == text
    assert getattr(caught.value, "retry_after", None) == retry_after
    assert len(fake_teams.received) == 1


async def test_an_echoed_webhook_url_is_blanked_in_the_error(fake_teams, start_sink):
    fake_teams.reply(400, f"bad request to {fake_teams.url} ({fake_teams.path})")
    sink = await start_sink(webhook_url=fake_teams.url)

    with pytest.raises(PermanentError) as caught:
        await sink.deliver(make_event())

    assert caught.value.message == "HTTP 400: bad request to [webhook url] ([webhook url])"


async def test_connection_refused_is_retryable_and_keeps_the_url_secret(refused_url, start_sink):
    assert "sig=" in refused_url
    sink = await start_sink(webhook_url=refused_url)

    with pytest.raises(RetryableError) as caught:
        await sink.deliver(make_event())

    assert caught.value.message == "cannot reach the Teams webhook: ClientConnectorError"
    assert caught.value.retry_after is None
    assert caught.value.__cause__ is None
    assert "sig=" not in str(caught.value)


async def test_a_timeout_is_retryable(fake_teams, tmp_path):
    fake_teams.reply(202, delay=5.0)
    sink = TeamsSink("teams", TeamsOptions(webhook_url=fake_teams.url))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.2)) as session:
        await sink.start(SinkContext(http=session, base_dir=tmp_path, logger=logging.getLogger()))
        with pytest.raises(RetryableError) as caught:
            await sink.deliver(make_event())

    assert caught.value.message == "cannot reach the Teams webhook: TimeoutError"
    assert fake_teams.secret not in caught.value.message


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example/workflows/1/invoke?sig=SeCrEt",
        "hooks.example/workflows/1/invoke?sig=SeCrEt",
        "https://[::1/workflows/1/invoke?sig=SeCrEt",
    ],
)
def test_check_refuses_a_url_without_quoting_it(url):
    sink = TeamsSink("teams", TeamsOptions(webhook_url=url))

    assert list(sink.check()) == [
        "webhook_url: expected the https:// URL Teams gave for the webhook"
    ]


# End to end: the built-in standard-webhooks source routed to the teams sink at the fake.


def router_config(**delivery: Any) -> dict[str, Any]:
    return {
        "sources": {"demo": {"plugin": "standard-webhooks", "secrets": [WHSEC]}},
        "sinks": {
            "teams": {
                "plugin": "teams",
                "webhook_url": "${TEAMS_WEBHOOK_URL}",
                "title": "Calls",
                "delivery": {"retry_schedule": ["50ms"], "jitter": 0, **delivery},
            }
        },
        "routes": [{"sources": ["demo"], "types": ["call.*"], "sinks": ["teams"]}],
    }


CALL_ENDED = {"type": "call.ended", "timestamp": "2025-03-01T10:04:05Z", "data": {"id": "c-1"}}


async def test_router_posts_a_webhook_to_teams(make_router, fake_teams):
    router = await make_router(router_config(), environ={"TEAMS_WEBHOOK_URL": fake_teams.url})

    status, body = await router.post("demo", CALL_ENDED)

    assert status == 200, body
    assert body["status"] == "accepted"
    [request] = await fake_teams.wait_for(1)
    assert request.path_qs == f"{fake_teams.path}?{fake_teams.query}"
    assert request.json == message(
        heading("Calls"),
        facts(("Event", "call.ended"), ("Source", "demo"), ("Time", "2025-03-01 10:04:05 UTC")),
    )


async def test_router_honours_retry_after_from_teams(make_router, fake_teams, observer):
    # The schedule says wait 30 s; Teams says 0: the retry arrives well inside the 5 s timeout.
    fake_teams.reply(429, "slow down", {"Retry-After": "0"})
    config = router_config(retry_schedule=["30s"])
    router = await make_router(config, environ={"TEAMS_WEBHOOK_URL": fake_teams.url})

    status, _ = await router.post("demo", CALL_ENDED)

    assert status == 200
    first, second = await fake_teams.wait_for(2, within=5)
    assert first.json == second.json
    await observer.wait_until(lambda: observer.succeeded == [2], within=5)
    assert observer.failed == [(1, "HTTP 429: slow down", True)]
    assert observer.dead == []


async def test_router_dead_letters_a_refused_card_at_once(make_router, fake_teams, observer):
    fake_teams.reply(400, "Bad payload")
    router = await make_router(router_config(), environ={"TEAMS_WEBHOOK_URL": fake_teams.url})

    status, _ = await router.post("demo", CALL_ENDED)

    assert status == 200
    await observer.wait_until(lambda: observer.dead != [], within=5)
    assert observer.dead == ["HTTP 400: Bad payload"]
    assert observer.failed == [(1, "HTTP 400: Bad payload", False)]
    await asyncio.sleep(0.2)  # the 50 ms retry schedule would have retried by now
    assert len(fake_teams.received) == 1


async def test_router_refuses_a_bad_url_without_quoting_it(make_router):
    bad = "ftp://hooks.example/workflows/1/invoke?sig=SeCrEt"

    with pytest.raises(ConfigError) as caught:
        await make_router(router_config(), environ={"TEAMS_WEBHOOK_URL": bad})

    assert caught.value.problems == [
        "sinks.teams.webhook_url: expected the https:// URL Teams gave for the webhook"
    ]
    assert "SeCrEt" not in str(caught.value)


async def test_the_readme_example_routes_a_call_to_teams(make_router, fake_teams):
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    document = tomllib.loads(readme.split("```toml\n", 1)[1].split("```", 1)[0])
    document["sources"] = {"demo": {"plugin": "standard-webhooks", "secrets": [WHSEC]}}
    router = await make_router(document, environ={"TEAMS_WEBHOOK_URL": fake_teams.url})

    status, _ = await router.post("demo", CALL_ENDED)

    assert status == 200
    [request] = await fake_teams.wait_for(1)
    assert request.json == message(
        heading("Calls"),
        facts(("Event", "call.ended"), ("Source", "demo"), ("Time", "2025-03-01 10:04:05 UTC")),
    )
