"""Posting one message through slack_sdk, and what each Slack answer means for a retry.

Error messages are built here from Slack's error code and the HTTP status only: slack_sdk's
own messages quote the request URL, which for an incoming webhook is the secret itself.
"""

from __future__ import annotations

import abc
import json
import logging
import os
import re
from collections.abc import Mapping
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from eventrouter import DeliveryError, PermanentError, RetryableError, retry_after_seconds
from eventrouter_slack.messages import SlackMessage

__all__ = [
    "Poster",
    "WebApiPoster",
    "WebhookPoster",
    "api_error",
    "network_error",
    "sdk_logger",
    "webhook_error",
]

#: slack_sdk logs request URLs (a webhook URL is a secret) when its logger's own level is
#: DEBUG or unset; this logger is given to the clients and never goes below WARNING
sdk_logger = logging.getLogger("eventrouter_slack.slack_sdk")
sdk_logger.setLevel(logging.WARNING)

#: Web API errors worth retrying; every other ``ok: false`` answer would fail the same way again
RETRYABLE_API_ERRORS = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "team_added_to_org",
        "message_limit_exceeded",
    }
)

_HINTS = {
    "invalid_auth": "the token is not valid; check the bot token",
    "not_authed": "no token was sent; check the token option",
    "token_revoked": "the token was revoked; install the app again",
    "token_expired": "the token expired; issue a new one",
    "account_inactive": "the token belongs to a deleted user or workspace",
    "missing_scope": "the app lacks the chat:write scope",
    "channel_not_found": "no such channel, or the app cannot see it; invite it or use the channel id",
    "not_in_channel": "invite the app to the channel (/invite @app)",
    "is_archived": "the channel is archived",
    "channel_is_archived": "the channel is archived",
    "no_service": "the webhook was removed or its URL is wrong; create a new incoming webhook",
    "no_service_id": "the webhook URL is incomplete",
    "no_team": "the workspace of this webhook no longer exists",
    "team_disabled": "the workspace of this webhook is disabled",
    "invalid_token": "the webhook URL is no longer valid; create a new incoming webhook",
    "action_prohibited": "a workspace admin restricted posting to this channel",
    "posting_to_general_channel_denied": "only admins may post to this channel",
    "invalid_payload": "Slack refused the message; its blocks may be malformed",
    "invalid_blocks": "Slack refused the message blocks",
    "msg_too_long": "the message is too long",
}

_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class Poster(abc.ABC):
    """Sends one message to one Slack destination; raises DeliveryError when it cannot."""

    @abc.abstractmethod
    async def post(self, message: SlackMessage) -> None: ...


class WebhookPoster(Poster):
    """Through an incoming webhook: Slack answers ``ok`` (200) or an error code in plain text."""

    def __init__(self, url: str, *, session: aiohttp.ClientSession) -> None:
        self.client = AsyncWebhookClient(url, session=session, retry_handlers=[], logger=sdk_logger)

    async def post(self, message: SlackMessage) -> None:
        try:
            response = await self.client.send(
                text=message.text, blocks=message.blocks, unfurl_links=False, unfurl_media=False
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise network_error(exc) from None
        if 200 <= response.status_code < 300:
            return
        raise webhook_error(response.status_code, response.body, response.headers)


class WebApiPoster(Poster):
    """Through ``chat.postMessage`` with a bot token; Slack answers ``{"ok": ...}`` JSON."""

    def __init__(
        self, token: str, channel: str, *, base_url: str, session: aiohttp.ClientSession
    ) -> None:
        self.channel = channel
        self.client = AsyncWebClient(
            token=token, base_url=base_url, session=session, retry_handlers=[], logger=sdk_logger
        )

    async def post(self, message: SlackMessage) -> None:
        try:
            await self.client.chat_postMessage(
                channel=self.channel,
                text=message.text,
                blocks=message.blocks,
                unfurl_links=False,
                unfurl_media=False,
            )
        except SlackApiError as exc:
            raise api_error(exc.response) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise network_error(exc) from None


def webhook_error(status: int, body: str | None, headers: Mapping[str, Any]) -> DeliveryError:
    """The error for an incoming webhook's non-2xx answer (429 and 5xx retryable)."""
    code = _code(body)
    detail = f"Slack webhook answered HTTP {status}" + (f" {code}" if code else "")
    retry_after = retry_after_seconds(_header(headers, "Retry-After"))
    # the status and Slack's answer go into the attempt history (the core masks and bounds it)
    answer: dict[str, Any] = {"status": status, "response_excerpt": body or None}
    if status == 429:
        return RetryableError(f"{detail} (rate limited)", retry_after=retry_after, **answer)
    if status >= 500 or status in (408, 425):
        return RetryableError(detail, retry_after=retry_after, **answer)
    return PermanentError(_with_hint(detail, code), **answer)


def api_error(response: Any) -> DeliveryError:
    """The error for a failed ``chat.postMessage`` (``ok: false``, 429 or an HTTP error)."""
    status = getattr(response, "status_code", None) or getattr(response, "status", 0) or 0
    data = getattr(response, "data", None)
    code = _code(data.get("error")) if isinstance(data, Mapping) else ""
    detail = f"Slack chat.postMessage failed: {code or 'no error code'} (HTTP {status})"
    retry_after = retry_after_seconds(_header(getattr(response, "headers", None), "Retry-After"))
    excerpt = json.dumps(data, default=str) if isinstance(data, Mapping) else None
    answer: dict[str, Any] = {"status": status or None, "response_excerpt": excerpt}
    if status == 429 or code in ("ratelimited", "rate_limited"):
        return RetryableError(f"{detail}; rate limited", retry_after=retry_after, **answer)
    if status >= 500 or status in (408, 425) or code in RETRYABLE_API_ERRORS:
        return RetryableError(detail, retry_after=retry_after, **answer)
    return PermanentError(_with_hint(detail, code), **answer)


def network_error(exc: BaseException) -> RetryableError:
    """A connection failure, told by kind only (an aiohttp message may quote the URL)."""
    if isinstance(exc, TimeoutError):
        return RetryableError("Slack did not answer in time")
    reason = ""
    if isinstance(exc, aiohttp.ClientConnectorError) and exc.os_error.errno:
        # os.strerror, not the error's own text, which names the address
        reason = f": {os.strerror(exc.os_error.errno)}"
    return RetryableError(f"cannot reach Slack ({type(exc).__name__}{reason})")


def _code(value: Any) -> str:
    """Slack's error code, if ``value`` looks like one (never echo an arbitrary body)."""
    if not isinstance(value, str):
        return ""
    value = value.strip()
    return value if _CODE.match(value) else ""


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    if value is None and isinstance(headers, Mapping):
        lowered = name.lower()
        value = next((v for k, v in headers.items() if str(k).lower() == lowered), None)
    if isinstance(value, list):
        value = value[0] if value else None
    return str(value) if value is not None else None


def _with_hint(detail: str, code: str) -> str:
    hint = _HINTS.get(code)
    return f"{detail}: {hint}" if hint else detail
