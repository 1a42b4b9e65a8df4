"""What the sink sends to Slack, and how it reads each answer, against a fake Slack."""

from __future__ import annotations

import logging
import socket

import pytest

from eventrouter import Call, CallStatus, Contact, EventData, PermanentError, RetryableError
from eventrouter_slack.messages import default_message


@pytest.fixture
def failed_call(make_event):
    return make_event(
        "call.ended",
        data=EventData(
            contact=Contact(phone="+521234567890", name="Sofía"),
            call=Call(status=CallStatus.FAILED, provider_status="failed"),
        ),
    )


def assert_secret_free(message: str, fake_slack) -> None:
    assert fake_slack.webhook_secret not in message
    assert fake_slack.token not in message
    assert "SeCrEt" not in message
    assert "/services/" not in message


async def test_webhook_post_sends_text_and_blocks(fake_slack, make_sink, failed_call):
    sink = await make_sink(webhook_url=fake_slack.webhook_url, min_interval=0)
    await sink.deliver(failed_call)
    assert len(fake_slack.requests) == 1
    request = fake_slack.requests[0]
    expected = default_message(failed_call)
    assert request.path == f"/services/T0001/B0001/{fake_slack.webhook_secret}"
    assert request.headers["Content-Type"] == "application/json;charset=utf-8"
    assert "Authorization" not in request.headers
    assert request.json == {
        "text": expected.text,
        "blocks": expected.blocks,
        "unfurl_links": False,
        "unfurl_media": False,
    }
    assert request.json["blocks"][0]["text"]["text"] == ":x: Call failed: Sofía (+521234567890)"


async def test_web_api_post_sends_bearer_token_and_channel(fake_slack, make_sink, failed_call):
    sink = await make_sink(
        token=fake_slack.token, channel="C0123456789", base_url=fake_slack.api_url, min_interval=0
    )
    await sink.deliver(failed_call)
    assert len(fake_slack.requests) == 1
    request = fake_slack.requests[0]
    expected = default_message(failed_call)
    assert request.path == "/api/chat.postMessage"
    assert request.headers["Authorization"] == f"Bearer {fake_slack.token}"
    assert request.headers["Content-Type"].startswith("application/json")
    assert request.json == {
        "channel": "C0123456789",
        "text": expected.text,
        "blocks": expected.blocks,
        "unfurl_links": False,
        "unfurl_media": False,
    }


async def test_template_is_what_gets_posted(fake_slack, make_sink, failed_call):
    sink = await make_sink(
        webhook_url=fake_slack.webhook_url,
        min_interval=0,
        templates={"call.*": ":rotating_light: {contact.name} ({contact.phone}): {call.status}"},
    )
    await sink.deliver(failed_call)
    body = fake_slack.requests[0].json
    assert body["text"] == ":rotating_light: Sofía (+521234567890): failed"
    assert body["blocks"][0] == {
        "type": "section",
        "text": {"type": "mrkdwn", "text": ":rotating_light: Sofía (+521234567890): failed"},
    }
    assert body["blocks"][1]["type"] == "context"


# -- incoming webhook answers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "kind", "message", "retry_after"),
    [
        (
            (400, "invalid_payload", {}),
            PermanentError,
            "Slack webhook answered HTTP 400 invalid_payload: Slack refused the message; "
            "its blocks may be malformed",
            None,
        ),
        (
            (429, "rate_limited", {"Retry-After": "7"}),
            RetryableError,
            "Slack webhook answered HTTP 429 rate_limited (rate limited)",
            7.0,
        ),
        (
            (404, "no_service", {}),
            PermanentError,
            "Slack webhook answered HTTP 404 no_service: the webhook was removed or its URL "
            "is wrong; create a new incoming webhook",
            None,
        ),
        (
            (410, "channel_is_archived", {}),
            PermanentError,
            "Slack webhook answered HTTP 410 channel_is_archived: the channel is archived",
            None,
        ),
        (
            (500, "<html>oops at /services/T0001/B0001/XXXXwebhookSECRETxxxx</html>", {}),
            RetryableError,
            "Slack webhook answered HTTP 500",
            None,
        ),
        (
            (503, "service_unavailable", {"Retry-After": "30"}),
            RetryableError,
            "Slack webhook answered HTTP 503 service_unavailable",
            30.0,
        ),
    ],
)
async def test_webhook_errors_are_classified(
    fake_slack, make_sink, failed_call, reply, kind, message, retry_after
):
    status, body, headers = reply
    fake_slack.script(
        "/services/T0001/B0001/XXXXwebhookSECRETxxxx", fake_slack.Reply(status, body, headers)
    )
    sink = await make_sink(webhook_url=fake_slack.webhook_url, min_interval=0)
    with pytest.raises(kind) as caught:
        await sink.deliver(failed_call)
    assert type(caught.value) is kind
    assert caught.value.message == message
    assert str(caught.value) == message
    assert getattr(caught.value, "retry_after", None) == retry_after
    assert_secret_free(str(caught.value), fake_slack)
    assert len(fake_slack.requests) == 1


async def test_a_hung_post_times_out_and_the_next_one_goes_out(fake_slack, make_sink, failed_call):
    fake_slack.script("/services/T0001/B0001/XXXXwebhookSECRETxxxx", fake_slack.Reply(delay=2.0))
    sink = await make_sink(
        webhook_url=fake_slack.webhook_url, min_interval=0, request_timeout="200ms"
    )
    with pytest.raises(RetryableError) as caught:
        await sink.deliver(failed_call)
    assert caught.value.message == "Slack did not answer within 0.2 s"
    await sink.deliver(failed_call)
    assert len(fake_slack.requests) == 2


async def test_network_error_is_retryable_and_secret_free(make_sink, failed_call):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    secret_url = f"http://127.0.0.1:{port}/services/T1/B1/XXXXwebhookSECRETxxxx"
    sink = await make_sink(webhook_url=secret_url, min_interval=0)
    with pytest.raises(RetryableError) as caught:
        await sink.deliver(failed_call)
    assert caught.value.message == "cannot reach Slack (ClientConnectorError: Connection refused)"
    assert caught.value.retry_after is None


async def test_sdk_debug_logging_never_shows_the_webhook_url(
    fake_slack, make_sink, failed_call, caplog
):
    caplog.set_level(logging.DEBUG)
    sink = await make_sink(webhook_url=fake_slack.webhook_url, min_interval=0)
    await sink.deliver(failed_call)
    assert len(fake_slack.requests) == 1
    # the fake server's own access log shows its path; everything else must not
    ours = [r.getMessage() for r in caplog.records if r.name != "aiohttp.access"]
    assert not [line for line in ours if fake_slack.webhook_secret in line]


# -- chat.postMessage answers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "payload", "kind", "message", "retry_after"),
    [
        (
            200,
            {},
            {"ok": False, "error": "channel_not_found"},
            PermanentError,
            "Slack chat.postMessage failed: channel_not_found (HTTP 200): no such channel, or "
            "the app cannot see it; invite it or use the channel id",
            None,
        ),
        (
            200,
            {},
            {"ok": False, "error": "not_in_channel"},
            PermanentError,
            "Slack chat.postMessage failed: not_in_channel (HTTP 200): invite the app to the "
            "channel (/invite @app)",
            None,
        ),
        (
            429,
            {"Retry-After": "3"},
            {"ok": False, "error": "ratelimited"},
            RetryableError,
            "Slack chat.postMessage failed: ratelimited (HTTP 429); rate limited",
            3.0,
        ),
        (
            200,
            {},
            {"ok": False, "error": "ratelimited"},
            RetryableError,
            "Slack chat.postMessage failed: ratelimited (HTTP 200); rate limited",
            None,
        ),
        (
            200,
            {},
            {"ok": False, "error": "internal_error"},
            RetryableError,
            "Slack chat.postMessage failed: internal_error (HTTP 200)",
            None,
        ),
        (
            503,
            {},
            {"ok": False, "error": "service_unavailable"},
            RetryableError,
            "Slack chat.postMessage failed: service_unavailable (HTTP 503)",
            None,
        ),
        (
            200,
            {},
            {"ok": False, "error": "some_new_error"},
            PermanentError,
            "Slack chat.postMessage failed: some_new_error (HTTP 200)",
            None,
        ),
        (
            200,
            {},
            {"ok": False, "error": "Bearer xoxb-1111-2222-SeCrEtToKeNvAlUe is bad"},
            PermanentError,
            "Slack chat.postMessage failed: no error code (HTTP 200)",
            None,
        ),
    ],
)
async def test_web_api_errors_are_classified(
    fake_slack, make_sink, failed_call, status, headers, payload, kind, message, retry_after
):
    fake_slack.script("/api/chat.postMessage", fake_slack.Reply.api(status, headers, **payload))
    sink = await make_sink(
        token=fake_slack.token, channel="C0123456789", base_url=fake_slack.api_url, min_interval=0
    )
    with pytest.raises(kind) as caught:
        await sink.deliver(failed_call)
    assert type(caught.value) is kind
    assert caught.value.message == message
    assert getattr(caught.value, "retry_after", None) == retry_after
    assert_secret_free(str(caught.value), fake_slack)
    assert caught.value.__cause__ is None
    assert len(fake_slack.requests) == 1


async def test_web_api_non_json_gateway_error_is_retryable(fake_slack, make_sink, failed_call):
    fake_slack.script(
        "/api/chat.postMessage", fake_slack.Reply(502, "<html>Bad Gateway</html>", {}, "text/html")
    )
    sink = await make_sink(
        token=fake_slack.token, channel="C0123456789", base_url=fake_slack.api_url, min_interval=0
    )
    with pytest.raises(RetryableError) as caught:
        await sink.deliver(failed_call)
    assert caught.value.message == "Slack chat.postMessage failed: no error code (HTTP 502)"
    assert_secret_free(str(caught.value), fake_slack)


async def test_web_api_wrong_token_is_permanent_and_secret_free(fake_slack, make_sink, failed_call):
    sink = await make_sink(
        token="xoxb-9999-WrongSeCrEt",
        channel="C0123456789",
        base_url=fake_slack.api_url,
        min_interval=0,
    )
    with pytest.raises(PermanentError) as caught:
        await sink.deliver(failed_call)
    assert caught.value.message == (
        "Slack chat.postMessage failed: invalid_auth (HTTP 200): the token is not valid; "
        "check the bot token"
    )
    assert "WrongSeCrEt" not in str(caught.value)
    assert fake_slack.requests[0].headers["Authorization"] == "Bearer xoxb-9999-WrongSeCrEt"
