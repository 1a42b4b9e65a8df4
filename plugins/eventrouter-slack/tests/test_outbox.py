"""Pacing and digests: one message per interval per destination, bursts folded into one."""

from __future__ import annotations

import asyncio
import time

import pytest

from eventrouter import (
    Call,
    CallStatus,
    Campaign,
    CampaignStatus,
    Contact,
    EventData,
    RetryableError,
)
from eventrouter_slack.messages import default_message
from eventrouter_slack.outbox import Outbox, Pacer


@pytest.fixture
def calls(make_event):
    """Five failed-call events to different numbers."""
    return [
        make_event(
            "call.ended",
            id=f"evt_{i}",
            data=EventData(contact=Contact(phone=f"+52000{i}"), call=Call(status=CallStatus.BUSY)),
        )
        for i in range(5)
    ]


async def timed(awaitable):
    """Await ``awaitable``; return (monotonic time it finished, exception or None)."""
    try:
        await awaitable
    except Exception as exc:
        return time.monotonic(), exc
    return time.monotonic(), None


async def test_two_messages_to_one_destination_are_a_second_apart(fake_slack, make_sink, calls):
    sink = await make_sink(webhook_url=fake_slack.webhook_url)  # min_interval defaults to 1 s
    results = await asyncio.gather(timed(sink.deliver(calls[0])), timed(sink.deliver(calls[1])))
    first, second = fake_slack.requests
    assert first.json["text"] == default_message(calls[0]).text
    assert second.json["text"] == default_message(calls[1]).text
    assert second.at - first.at >= 0.9
    assert second.at - first.at < 3.0
    # each delivery returned only after its own message was posted
    assert results[0][1] is None
    assert results[1][1] is None
    assert results[0][0] >= first.at
    assert results[1][0] >= second.at


async def test_sinks_posting_to_one_destination_share_its_pace(fake_slack, make_sink, calls):
    one = await make_sink("one", webhook_url=fake_slack.webhook_url, min_interval="1s")
    two = await make_sink("two", webhook_url=fake_slack.webhook_url, min_interval="1s")
    other = await make_sink(
        "other",
        token=fake_slack.token,
        channel="C0123456789",
        base_url=fake_slack.api_url,
        min_interval="1s",
    )
    await asyncio.gather(one.deliver(calls[0]), two.deliver(calls[1]), other.deliver(calls[2]))
    hooks = [r for r in fake_slack.requests if r.path.startswith("/services/")]
    api = [r for r in fake_slack.requests if r.path == "/api/chat.postMessage"]
    assert len(hooks) == 2
    assert len(api) == 1
    assert hooks[1].at - hooks[0].at >= 0.9
    # another destination is not held back by the first one's pace
    assert api[0].at < hooks[1].at


async def test_the_pace_runs_from_when_a_slow_post_reached_slack(calls):
    # the first post takes 0.4 s to get through (a new connection, a stalled machine); the next
    # must still reach Slack a whole interval after it, not 0.3 s after it was sent
    sent: list[str] = []
    arrived: list[float] = []

    async def send(events):
        sent.append(events[0].id)
        if len(sent) == 1:
            await asyncio.sleep(0.4)
        arrived.append(time.monotonic())

    pacer = Pacer()
    one = Outbox(send=send, pacer=pacer, interval=0.3, name="one")
    two = Outbox(send=send, pacer=pacer, interval=0.3, name="two")
    await asyncio.gather(one.submit(calls[0]), two.submit(calls[1]))
    assert len(arrived) == 2
    assert arrived[1] - arrived[0] >= 0.3
    await one.close()
    await two.close()


async def test_retry_after_holds_the_next_message(fake_slack, make_sink, calls):
    fake_slack.script(
        "/services/T0001/B0001/XXXXwebhookSECRETxxxx",
        fake_slack.Reply(429, "rate_limited", {"Retry-After": "0.6"}),
    )
    sink = await make_sink(webhook_url=fake_slack.webhook_url, min_interval="10ms")
    with pytest.raises(RetryableError) as caught:
        await sink.deliver(calls[0])
    assert caught.value.retry_after == 0.6
    await sink.deliver(calls[1])
    limited, accepted = fake_slack.requests
    assert accepted.at - limited.at >= 0.5
    assert accepted.json["text"] == default_message(calls[1]).text


async def test_a_burst_beyond_the_threshold_is_folded_into_one_digest(fake_slack, make_sink, calls):
    sink = await make_sink(
        webhook_url=fake_slack.webhook_url,
        min_interval="20ms",
        digest_window="600ms",
        digest_threshold=2,
        digest_lines=2,
    )
    started = time.monotonic()
    results = await asyncio.gather(*(timed(sink.deliver(event)) for event in calls))
    assert [error for _, error in results] == [None] * 5
    assert len(fake_slack.requests) == 3
    first, second, digest = fake_slack.requests
    assert first.json["text"] == default_message(calls[0]).text
    assert second.json["text"] == default_message(calls[1]).text
    assert digest.json["text"] == ":bell: Digest: 3 events (3 call.ended)"
    blocks = digest.json["blocks"]
    assert blocks[0]["text"]["text"] == ":bell: Digest: 3 events"
    assert blocks[1]["text"]["text"] == "*By type*\n• `call.ended` × 3"
    assert blocks[2]["text"]["text"] == (
        "*First 2*\n• :no_entry: Call busy: +520002\n• :no_entry: Call busy: +520003"
    )
    assert blocks[3]["elements"][0]["text"] == (
        "…and 1 more. Folded into one message: more than 2 events arrived within 0.6 s."
    )
    # the digest waited for the window, and its deliveries returned only after it was posted
    assert digest.at - started >= 0.55
    assert all(finished >= digest.at for finished, _ in results[2:])
    assert results[0][0] < digest.at


async def test_events_after_the_window_are_posted_one_by_one_again(fake_slack, make_sink, calls):
    sink = await make_sink(
        webhook_url=fake_slack.webhook_url,
        min_interval="10ms",
        digest_window="300ms",
        digest_threshold=1,
    )
    await sink.deliver(calls[0])
    await asyncio.sleep(0.35)
    await sink.deliver(calls[1])
    assert [r.json["text"] for r in fake_slack.requests] == [
        default_message(calls[0]).text,
        default_message(calls[1]).text,
    ]


async def test_a_digest_of_one_is_the_event_s_own_message(fake_slack, make_sink, calls):
    sink = await make_sink(
        webhook_url=fake_slack.webhook_url,
        min_interval="10ms",
        digest_window="300ms",
        digest_threshold=1,
    )
    await sink.deliver(calls[0])
    started = time.monotonic()
    await sink.deliver(calls[1])
    assert time.monotonic() - started >= 0.25  # it waited in a digest that stayed alone
    assert [r.json["text"] for r in fake_slack.requests] == [
        default_message(calls[0]).text,
        default_message(calls[1]).text,
    ]


async def test_a_failed_digest_fails_every_delivery_it_carries(fake_slack, make_sink, calls):
    sink = await make_sink(
        webhook_url=fake_slack.webhook_url,
        min_interval="10ms",
        digest_window="300ms",
        digest_threshold=1,
    )
    await sink.deliver(calls[0])
    fake_slack.script(
        "/services/T0001/B0001/XXXXwebhookSECRETxxxx", fake_slack.Reply(500, "internal_error")
    )
    results = await asyncio.gather(*(timed(sink.deliver(event)) for event in calls[1:4]))
    errors = [error for _, error in results]
    assert [type(error) for error in errors] == [RetryableError] * 3
    assert [error.message for error in errors] == [
        "Slack webhook answered HTTP 500 internal_error"
    ] * 3
    assert len(fake_slack.requests) == 2
    assert fake_slack.requests[1].json["text"] == ":bell: Digest: 3 events (3 call.ended)"


async def test_a_delivery_cancelled_while_waiting_leaves_the_digest(fake_slack, make_sink, calls):
    sink = await make_sink(
        webhook_url=fake_slack.webhook_url,
        min_interval="10ms",
        digest_window="300ms",
        digest_threshold=1,
    )
    await sink.deliver(calls[0])
    kept = asyncio.create_task(sink.deliver(calls[1]))
    dropped = asyncio.create_task(sink.deliver(calls[2]))
    await asyncio.sleep(0.05)
    dropped.cancel()
    await kept
    with pytest.raises(asyncio.CancelledError):
        await dropped
    # only the kept event is posted, as its own message (a digest of one)
    assert [r.json["text"] for r in fake_slack.requests] == [
        default_message(calls[0]).text,
        default_message(calls[1]).text,
    ]


async def test_close_fails_waiting_deliveries_as_retryable(fake_slack, make_sink, calls):
    sink = await make_sink(
        webhook_url=fake_slack.webhook_url,
        min_interval="10ms",
        digest_window="5s",
        digest_threshold=1,
    )
    await sink.deliver(calls[0])
    waiting = asyncio.create_task(sink.deliver(calls[1]))
    await asyncio.sleep(0.05)
    await sink.close()
    with pytest.raises(RetryableError) as caught:
        await waiting
    assert caught.value.message == "the Slack sink stopped before this event was posted"
    with pytest.raises(RetryableError) as caught:
        await sink.deliver(calls[2])
    assert caught.value.message == "the Slack sink is shutting down"
    assert len(fake_slack.requests) == 1


async def test_digest_counts_types(fake_slack, make_sink, calls, make_event):
    failed = make_event(
        "campaign.completed",
        id="evt_camp",
        data=EventData(campaign=Campaign(name="Q2", status=CampaignStatus.FAILED)),
    )
    sink = await make_sink(
        webhook_url=fake_slack.webhook_url,
        min_interval="10ms",
        digest_window="300ms",
        digest_threshold=1,
    )
    await sink.deliver(calls[0])
    await asyncio.gather(sink.deliver(calls[1]), sink.deliver(failed), sink.deliver(calls[2]))
    digest = fake_slack.requests[1].json
    assert digest["text"] == ":bell: Digest: 3 events (2 call.ended, 1 campaign.completed)"
    assert digest["blocks"][1]["text"]["text"] == (
        "*By type*\n• `call.ended` × 2\n• `campaign.completed` × 1"
    )
    assert digest["blocks"][2]["text"]["text"] == (
        "*First 3*\n• :no_entry: Call busy: +520001\n• :x: Campaign failed: Q2\n"
        "• :no_entry: Call busy: +520002"
    )


async def test_an_unexpected_error_fails_the_delivery_without_its_text(calls, caplog):
    posted = []

    async def send(events):
        posted.append([event.id for event in events])
        if len(posted) == 1:
            raise ValueError("https://hooks.slack.com/services/T/B/SeCrEt in a bad place")

    outbox = Outbox(send=send, pacer=Pacer(), interval=0.0, name="alerts")
    with pytest.raises(RetryableError) as caught:
        await outbox.submit(calls[0])
    assert caught.value.message == "posting to Slack failed unexpectedly (ValueError)"
    assert caught.value.retry_after is None
    assert "SeCrEt" not in caplog.text
    assert [r.getMessage() for r in caplog.records] == [
        "sink alerts: posting to Slack failed unexpectedly: ValueError"
    ]
    # the outbox keeps working after it
    await outbox.submit(calls[1])
    assert posted == [["evt_0"], ["evt_1"]]
    await outbox.close()
