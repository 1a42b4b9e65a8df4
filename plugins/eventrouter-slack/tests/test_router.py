"""End to end: a signed Standard Webhooks request in, a Slack message out; the README's config."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import attrs

from eventrouter import Call, CallStatus, Campaign, CampaignStatus, Contact, EventData
from eventrouter.testing import DeliveryState, installed_types, parse_config
from eventrouter_slack import SlackOptions

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
README = Path(__file__).resolve().parent.parent / "README.md"


async def eventually(check, *, timeout: float = 10.0, what: str = "condition"):
    """Await ``check()`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def config(sinks, routes=None):
    return {
        "sources": {"billing": {"plugin": "standard-webhooks", "secrets": [WHSEC]}},
        "sinks": sinks,
        "routes": routes or [{"sinks": list(sinks)}],
    }


async def test_standard_webhooks_event_reaches_slack_through_a_template(make_router, fake_slack):
    router = await make_router(
        config(
            {
                "alerts": {
                    "plugin": "slack",
                    "webhook_url": "${SLACK_WEBHOOK_URL}",
                    "min_interval": "10ms",
                    "templates": {
                        "invoice.*": "*{type}*: invoice {attributes.id} for "
                        "{attributes.customer.name} ({attributes.amount:.2f} {subject})"
                    },
                    "delivery": {"retry_schedule": ["50ms"], "jitter": 0},
                }
            }
        ),
        environ={"SLACK_WEBHOOK_URL": fake_slack.webhook_url},
    )
    status, body = await router.post(
        "billing",
        {
            "type": "invoice.paid",
            "timestamp": "2026-06-08T18:00:00Z",
            "data": {"id": "in_42", "amount": 12.5, "customer": {"name": "Ana <&>"}},
        },
    )
    assert status == 200, body
    requests = await fake_slack.wait_for(1)
    request = requests[0]
    text = "*invoice.paid*: invoice in_42 for Ana &lt;&amp;&gt; (12.50 )"
    assert request.path == f"/services/T0001/B0001/{fake_slack.webhook_secret}"
    assert request.json["text"] == text
    assert request.json["blocks"][0] == {
        "type": "section",
        "text": {"type": "mrkdwn", "text": text},
    }
    context = request.json["blocks"][1]["elements"][0]["text"]
    assert context.startswith("source `billing` · standard-webhooks `invoice.paid` · <!date^")
    assert context.endswith(f"`{body['event_id']}`")
    assert request.json["unfurl_links"] is False

    async def delivered():
        stored = await router.store.get_event(body["event_id"])
        return stored and stored.deliveries[0].state == DeliveryState.DONE

    await eventually(delivered, what="the delivery to be acknowledged")


async def test_default_message_through_the_web_api(make_router, fake_slack):
    router = await make_router(
        config(
            {
                "alerts": {
                    "plugin": "slack",
                    "token": "${SLACK_BOT_TOKEN}",
                    "channel": "C0123456789",
                    "base_url": fake_slack.api_url,
                    "min_interval": "10ms",
                }
            }
        ),
        environ={"SLACK_BOT_TOKEN": fake_slack.token},
    )
    status, body = await router.post(
        "billing", {"type": "subscription.canceled", "data": {"plan": "Gold"}}
    )
    assert status == 200, body
    request = (await fake_slack.wait_for(1))[0]
    assert request.path == "/api/chat.postMessage"
    assert request.headers["Authorization"] == f"Bearer {fake_slack.token}"
    assert request.json["channel"] == "C0123456789"
    assert request.json["text"] == (
        ":bell: subscription.canceled\nEvent `subscription.canceled` from source `billing`."
    )
    assert request.json["blocks"][0]["text"]["text"] == ":bell: subscription.canceled"
    assert request.json["blocks"][1]["fields"] == [{"type": "mrkdwn", "text": "*plan*\nGold"}]


async def test_a_revoked_webhook_is_dead_lettered_without_its_url(make_router, fake_slack, caplog):
    caplog.set_level(logging.DEBUG)
    secret_url = fake_slack.url + "/services/T9/B9/RevokedSeCrEtPart"
    router = await make_router(
        config({"alerts": {"plugin": "slack", "webhook_url": "${URL}", "min_interval": "10ms"}}),
        environ={"URL": secret_url},
    )
    status, body = await router.post("billing", {"type": "invoice.paid", "data": {}})
    assert status == 200, body

    async def dead():
        return await router.store.list_dead_letters(sink="alerts")

    letters = await eventually(dead, what="a dead letter")
    assert len(letters) == 1
    assert letters[0].event_id == body["event_id"]
    assert letters[0].attempts == 1
    assert letters[0].reason == (
        "Slack webhook answered HTTP 404 no_service: the webhook was removed or its URL is "
        "wrong; create a new incoming webhook"
    )
    assert fake_slack.requests[0].path == "/services/T9/B9/RevokedSeCrEtPart"
    ours = [r.getMessage() for r in caplog.records if r.name != "aiohttp.access"]
    assert not [line for line in ours if "RevokedSeCrEtPart" in line]


# -- the README's example --------------------------------------------------------------------


def readme_config():
    blocks = re.findall(r"```toml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1
    document = tomllib.loads(blocks[0])
    # the README's sources come from other plugins; any source with those names routes alike
    document["sources"] = {
        name: {"plugin": "standard-webhooks", "secrets": [WHSEC]} for name in ("altur", "exotel")
    }
    return parse_config(
        document,
        installed_types(),
        environ={
            "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T1/B1/x",
            "SLACK_BOT_TOKEN": "xoxb-1",
        },
    )


def test_readme_example_is_a_valid_config():
    config = readme_config()
    assert sorted(config.sinks) == ["campaign-alerts", "ops-slack"]
    ops = config.sinks["ops-slack"]
    assert ops.sink.options.digest_window == 60.0
    assert ops.delivery.timeout > ops.sink.options.digest_window
    assert ops.delivery.concurrency == 50


def test_readme_routes_match_the_event_dict(make_event):
    config = readme_config()

    def sinks_for(source, event):
        return config.sinks_for(source, event.type, event.to_dict())

    def cycle(status, next_cycle_at=None):
        campaign = Campaign(name="Q2", status=status, cycle=2, next_cycle_at=next_cycle_at)
        return make_event("campaign.cycle_completed", data=EventData(campaign=campaign))

    assert sinks_for("altur", cycle(CampaignStatus.COOLDOWN)) == ["campaign-alerts"]
    assert sinks_for("altur", cycle(CampaignStatus.ACTIVE)) == ["campaign-alerts"]
    assert sinks_for("altur", cycle(CampaignStatus.COMPLETED)) == []
    assert (
        sinks_for("altur", cycle(CampaignStatus.COOLDOWN, datetime(2026, 6, 9, tzinfo=UTC))) == []
    )
    assert sinks_for("exotel", cycle(CampaignStatus.COOLDOWN)) == []

    def finished(status, provider_status):
        campaign = Campaign(id="c1", status=status, provider_status=provider_status)
        return make_event("campaign.completed", source="exotel", data=EventData(campaign=campaign))

    assert sinks_for("exotel", finished(CampaignStatus.FAILED, "Failed")) == ["campaign-alerts"]
    assert sinks_for("exotel", finished(CampaignStatus.COMPLETED, "Completed")) == []
    assert sinks_for("exotel", finished(CampaignStatus.CANCELED, "Canceled")) == []
    assert sinks_for("altur", finished(CampaignStatus.FAILED, "failed")) == []

    def call(type, status):
        data = EventData(contact=Contact(phone="+521"), call=Call(status=status))
        return make_event(type, data=data)

    for status in (CallStatus.FAILED, CallStatus.NO_ANSWER, CallStatus.BUSY):
        assert sinks_for("exotel", call("call.ended", status)) == ["ops-slack"]
        assert sinks_for("altur", call("call.attempts_exhausted", status)) == ["ops-slack"]
    assert sinks_for("altur", call("call.ended", CallStatus.COMPLETED)) == []
    assert sinks_for("altur", make_event("call.ended")) == []


def test_readme_documents_every_option():
    text = README.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", text, re.M))
    assert documented == {field.name for field in attrs.fields(SlackOptions)}
