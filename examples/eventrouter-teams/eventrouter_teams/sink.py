"""Sink type ``teams``: post each event to a Microsoft Teams webhook as an Adaptive Card."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from attrs import field, frozen

from eventrouter import (
    CallStatus,
    CampaignStatus,
    Event,
    RetryableError,
    Secret,
    Sink,
    error_for_status,
)

__all__ = ["TeamsOptions", "TeamsSink", "adaptive_card"]

ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"

# Legacy Office 365 connector webhooks answer 200 even when Teams refused the message, and put
# the real status in the body: "Webhook message delivery failed with error: ... HTTP error 429 ...".
_CONNECTOR_FAILURE = re.compile(
    r"Webhook message delivery failed with error:(?:.*?returned HTTP error (\d{3}))?", re.DOTALL
)


@frozen
class TeamsOptions:
    #: the URL Teams gave for the webhook (Workflows or a legacy Incoming Webhook); a secret
    webhook_url: Secret = field(repr=False)
    #: the card's heading
    title: str = "eventrouter"
    #: list the event's details as a table of facts; false posts a one-line summary instead
    facts: bool = True


def adaptive_card(event: Event, *, title: str, facts: bool = True) -> dict[str, Any]:
    """The Teams message for ``event``: one Adaptive Card built from the normalised fields only.

    Reading ``event.data`` rather than ``event.raw`` is what makes one card fit every provider.
    """
    when = event.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "wrap": True}
    ]
    if facts:
        rows = [("Event", event.type), ("Source", event.source), ("Time", when), *_details(event)]
        body.append(
            {"type": "FactSet", "facts": [{"title": name, "value": value} for name, value in rows]}
        )
    else:
        body.append(
            {
                "type": "TextBlock",
                "text": f"{event.type} from {event.source} at {when}",
                "wrap": True,
            }
        )
    card = {"type": "AdaptiveCard", "version": "1.4", "body": body}
    return {"type": "message", "attachments": [{"contentType": ADAPTIVE_CARD, "content": card}]}


def _details(event: Event) -> Iterator[tuple[str, str]]:
    """A label and a value for each normalised field the event carries; absent ones are skipped."""
    contact, call, campaign = event.data.contact, event.data.call, event.data.campaign
    if contact is not None:
        if contact.name:
            yield "Contact", contact.name
        if contact.phone:
            yield "Phone", contact.phone
    if call is not None:
        if call.status is not CallStatus.UNKNOWN:
            yield "Call status", call.status.value
        if call.duration_seconds is not None:
            yield "Duration", _duration(call.duration_seconds)
    if campaign is not None:
        if campaign.name:
            yield "Campaign", campaign.name
        if campaign.status is not CampaignStatus.UNKNOWN:
            yield "Campaign status", campaign.status.value


def _duration(seconds: int) -> str:
    """``42s`` or ``3m 05s``: how long a call took, as a person reads it."""
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


class TeamsSink(Sink):
    """2xx is delivered; 408/429/5xx and network errors are retried; other 4xx are permanent.

    The webhook URL is the only credential Teams asks for, so it never appears in an error.
    """

    type_name = "teams"
    Options = TeamsOptions
    secret_options = ("webhook_url",)

    def check(self) -> Iterable[str]:
        try:
            parts = urlsplit(self.options.webhook_url)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            # Unlike most config messages this one does not quote the value: it is a secret.
            yield "webhook_url: expected the https:// URL Teams gave for the webhook"

    async def deliver(self, event: Event) -> None:
        message = adaptive_card(event, title=self.options.title, facts=self.options.facts)
        try:
            async with self.context.http.post(
                self.options.webhook_url, json=message, allow_redirects=False
            ) as response:
                text = await response.text(errors="replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            # str(exc) may quote the URL; the type says enough ("ClientConnectorError").
            raise RetryableError(f"cannot reach the Teams webhook: {type(exc).__name__}") from None
        detail = self._without_url(text)[:200]
        if response.status >= 300:
            raise error_for_status(
                response.status, detail=detail, retry_after=response.headers.get("Retry-After")
            )
        failure = _CONNECTOR_FAILURE.search(text)
        if failure:
            # No status in the body ("Error contacting Microsoft Teams endpoint"): a 502, retried.
            raise error_for_status(int(failure.group(1) or 502), detail=detail)

    def _without_url(self, text: str) -> str:
        """``text`` with the webhook URL, its path and its query blanked, should Teams echo them."""
        url = self.options.webhook_url
        parts = urlsplit(url)
        for secret in (url, parts.path, parts.query):
            if len(secret) > 1:
                text = text.replace(secret, "[webhook url]")
        return text
