"""Sink type ``http``: POST each event, as a structured CloudEvent, to a URL."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

import aiohttp
from attrs import field, frozen
from cloudevents.core.bindings.http import to_structured_event
from cloudevents.core.exceptions import BaseCloudEventException

from eventrouter.errors import EXCERPT_LIMIT, PermanentError, RetryableError
from eventrouter.events import Event
from eventrouter.hookspecs import hookimpl
from eventrouter.redact import Redactor
from eventrouter.sinks import Sink, error_for_status

__all__ = ["HTTPForwardSink"]


@frozen
class HTTPForwardOptions:
    #: where to POST (http or https)
    url: str
    #: extra request headers, e.g. {Authorization = "Bearer ${TOKEN}"}
    headers: dict[str, str] = field(factory=dict, repr=False)


class HTTPForwardSink(Sink):
    """Any 2xx is success; 408/429/5xx and network errors are retried; other 4xx are permanent."""

    type_name = "http"
    Options = HTTPForwardOptions
    secret_options = ("headers",)

    def __init__(self, name: str, options: HTTPForwardOptions) -> None:
        super().__init__(name, options)
        # the remote end may echo a credential back; masked before the answer is cut short,
        # which could otherwise leave the first part of one where the core cannot recognise it
        self._mask = Redactor(options.headers.values())

    def check(self) -> Iterable[str]:
        parts = urlsplit(self.options.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            yield f"url: expected an http:// or https:// URL, got {self.options.url!r}"

    async def deliver(self, event: Event) -> None:
        try:
            message = to_structured_event(event.to_cloudevent())
        except BaseCloudEventException as exc:
            # the same event will never become a valid CloudEvent: do not retry it for hours
            raise PermanentError(f"the event is not a valid CloudEvent: {exc}") from None
        headers = {**message.headers, **self.options.headers}
        try:
            async with self.context.http.post(
                self.options.url, data=message.body, headers=headers, allow_redirects=False
            ) as response:
                if response.status < 300:
                    return
                # the start of the answer, masked here too (the headers hold this sink's secrets)
                excerpt = self._mask(await response.text(errors="replace"))[:EXCERPT_LIMIT]
                raise error_for_status(
                    response.status,
                    detail=excerpt[:200],
                    retry_after=response.headers.get("Retry-After"),
                    response_excerpt=excerpt,
                )
        except aiohttp.ClientError as exc:
            raise RetryableError(f"{type(exc).__name__}: {exc}") from None


@hookimpl
def register_sinks(register: Callable[[type[Sink]], None]) -> None:
    register(HTTPForwardSink)
