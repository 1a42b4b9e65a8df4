"""Sink type ``slack``: each event as a Block Kit alert in a Slack channel."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from attrs import field, frozen

from eventrouter import Duration, Event, RetryableError, Sink, SinkContext
from eventrouter_slack.messages import (
    SlackMessage,
    default_message,
    digest_message,
    summarise,
    template_message,
)
from eventrouter_slack.outbox import Outbox, pacer_for
from eventrouter_slack.posting import Poster, WebApiPoster, WebhookPoster
from eventrouter_slack.templates import TemplateSet, template_problems
from eventrouter_slack.view import event_view, is_stalled

__all__ = ["SlackOptions", "SlackSink"]

SLACK_API = "https://slack.com/api/"


@frozen
class SlackOptions:
    """The ``[sinks.NAME]`` keys of a ``slack`` sink; secrets stay out of ``repr``."""

    #: incoming-webhook URL (a secret); or use token + channel
    webhook_url: str | None = field(default=None, repr=False)
    #: bot token (xoxb-..., a secret) for chat.postMessage
    token: str | None = field(default=None, repr=False)
    #: channel id or name for chat.postMessage (C0123456789 or #alerts)
    channel: str | None = None
    #: Web API base URL (tests point it at a local server)
    base_url: str = SLACK_API
    #: event-type glob -> template; see the README for the fields
    templates: dict[str, str] = field(factory=dict)
    #: least time between two messages to this destination
    min_interval: Duration = Duration(1)
    #: longest wait for Slack's answer to one post (a hung post would hold every later one)
    request_timeout: Duration = Duration(10)
    #: fold bursts into digests: the window (0 = never)
    digest_window: Duration = Duration(0)
    #: ... when more than this many events arrive within the window
    digest_threshold: int = 5
    #: headlines listed in a digest
    digest_lines: int = 10


class SlackSink(Sink):
    """Posts through an incoming webhook or chat.postMessage; paced, with optional digests."""

    type_name = "slack"
    Options = SlackOptions
    secret_options = ("webhook_url", "token")

    def __init__(self, name: str, options: SlackOptions) -> None:
        super().__init__(name, options)
        self.templates = TemplateSet.from_options(options.templates)
        self.outbox: Outbox | None = None
        self.poster: Poster | None = None

    def check(self) -> Iterable[str]:
        options = self.options
        if options.webhook_url and (options.token or options.channel):
            yield "webhook_url: set either webhook_url or token + channel, not both"
        elif options.webhook_url is not None:
            if not _is_http_url(options.webhook_url):
                # never echo the value: it is the secret
                yield "webhook_url: expected an https:// URL such as https://hooks.slack.com/services/..."
        elif options.token and not options.channel:
            yield "channel: required with token (a channel id such as C0123456789, or #name)"
        elif options.channel and not options.token:
            yield "token: required with channel (a bot token, xoxb-...)"
        elif not (options.token and options.channel):
            yield "webhook_url: required, unless token and channel are set"
        if not _is_http_url(options.base_url):
            yield f"base_url: expected an http(s):// URL, got {options.base_url!r}"
        if options.request_timeout <= 0:
            yield "request_timeout: must be more than 0"
        if options.digest_threshold < 1:
            yield "digest_threshold: must be at least 1"
        if options.digest_lines < 1:
            yield "digest_lines: must be at least 1"
        yield from template_problems(options.templates)

    async def start(self, context: SinkContext) -> None:
        await super().start(context)
        options = self.options
        if options.webhook_url:
            self.poster = WebhookPoster(options.webhook_url, session=context.http)
            destination = _key("webhook", options.webhook_url)
        else:
            assert options.token is not None
            assert options.channel is not None
            self.poster = WebApiPoster(
                options.token, options.channel, base_url=options.base_url, session=context.http
            )
            destination = _key("api", options.base_url, options.token, options.channel)
        self.outbox = Outbox(
            send=self._send,
            pacer=pacer_for(context.http, destination),
            interval=float(options.min_interval),
            digest_window=float(options.digest_window),
            digest_threshold=options.digest_threshold,
            logger=context.logger,
            name=self.name,
        )

    async def deliver(self, event: Event) -> None:
        if self.outbox is None:
            raise RuntimeError("the slack sink was not started")
        await self.outbox.submit(event)

    async def close(self) -> None:
        if self.outbox is not None:
            await self.outbox.close()

    def message_for(self, event: Event) -> SlackMessage:
        """The message for one event: the matching user template, else the default."""
        stalled = is_stalled(event)
        template = self.templates.find(event.type, stalled=stalled)
        if template is None:
            return default_message(event)
        view = event_view(event, title=summarise(event).headline)
        return template_message(event, template.render(view))

    def message_for_many(self, events: Sequence[Event]) -> SlackMessage:
        """One message for ``events``: the event's own message when there is one, else a digest."""
        if len(events) == 1:
            return self.message_for(events[0])
        return digest_message(
            events,
            lines=self.options.digest_lines,
            window=float(self.options.digest_window),
            threshold=self.options.digest_threshold,
        )

    async def _send(self, events: Sequence[Event]) -> None:
        assert self.poster is not None
        message = self.message_for_many(events)
        timeout = float(self.options.request_timeout)
        try:
            async with asyncio.timeout(timeout):
                await self.poster.post(message)
        except TimeoutError:
            raise RetryableError(f"Slack did not answer within {timeout:g} s") from None


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _key(*parts: str) -> str:
    """An opaque key for a destination, so the secret itself is never kept as a dict key."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()
