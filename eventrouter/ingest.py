"""One webhook request in, one outcome out: authenticate, parse, transform, route, store.

The shape of gidgethub's ``Event.from_http``: :class:`Ingest` takes a :class:`WebhookRequest`
(the raw body, headers, query, client address) and knows nothing of aiohttp; the HTTP handler
(``eventrouter.app``) reads the body, feeds it in and turns the :class:`Outcome` into the
response. Each step below either passes the event on or refuses it with an outcome:

authenticate (401/403) -> ``event_received`` observers -> parse (400; 503 if the plugin fails)
-> nesting check (400) -> ``event_normalised`` hooks (200 dropped) -> route, redact -> serialise
(400 if JSON cannot hold it) -> store, de-duplicating (200 duplicate; 503 if it cannot) -> 200.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

import pluggy

from eventrouter.config import Config
from eventrouter.dispatch import event_for_log
from eventrouter.errors import AuthenticationError, PayloadError, StoreUnavailable
from eventrouter.events import Event
from eventrouter.hooks import notify_observers, transform_event
from eventrouter.payload import MAX_NESTING, nesting_exceeds
from eventrouter.sources import Source, WebhookRequest
from eventrouter.store import IngestResult, Store

__all__ = ["Ingest", "Outcome", "within_deadline"]

log = logging.getLogger("eventrouter.ingest")

T = TypeVar("T")


class Outcome(NamedTuple):
    """What became of a request: its metrics label, and the status and JSON body to answer.

    (A named tuple rather than an attrs class: one is made per request, three times faster.)
    """

    label: str
    status: int
    body: dict[str, Any]
    retry_after: int | None = None

    @classmethod
    def refusal(cls, label: str, status: int, error: str, message: str, **extra: Any) -> Outcome:
        """An error outcome: ``{"error": code, "message": what is wrong, ...}`` (a
        ``retry_after`` is sent in the body and as the ``Retry-After`` header)."""
        body = {"error": error, "message": message, **extra}
        return cls(label, status, body, extra.get("retry_after"))


def _parser_failed() -> Outcome:
    """A genuine request whose plugin failed to make a storable event of it: 503, so that the
    provider retries once the plugin is fixed."""
    message = "the event could not be parsed; retry later"
    return Outcome.refusal("unavailable", 503, "parser_failed", message, retry_after=60)


class _Refused(Exception):
    """A step refused the request; ``outcome`` says how to answer."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome


async def within_deadline(config: Config, operation: Awaitable[T], what: str) -> T:
    """``await operation``, or StoreUnavailable once ``[store] operation_timeout`` has passed.

    The operation is cancelled then; a write may still land (Redis may be executing it), so a
    503 after a timeout does not prove that nothing was stored.
    """
    # asyncio.timeout's own steps (cancel the task when the timer fires; uncancel it on the way
    # out), without its object and its two coroutines: this runs once per ingested request
    seconds = float(config.store.operation_timeout)
    task = asyncio.current_task()
    assert task is not None, "within_deadline runs in a task"
    cancelling = task.cancelling()
    expired: list[bool] = []
    loop = asyncio.get_running_loop()
    timer = loop.call_at(loop.time() + seconds, _expire, task, expired)
    try:
        result = await operation
    except BaseException as exc:
        timer.cancel()
        # our cancellation, not one from outside (a shutdown's), becomes the timeout
        ours = bool(expired) and task.uncancel() <= cancelling
        if isinstance(exc, TimeoutError) or (ours and isinstance(exc, asyncio.CancelledError)):
            message = f"the store did not answer within {seconds:g}s ({what})"
            raise StoreUnavailable(message) from None
        raise
    timer.cancel()
    if expired:  # the operation finished regardless: the cancellation is withdrawn
        task.uncancel()
    return result


def _expire(task: asyncio.Task[Any], expired: list[bool]) -> None:
    expired.append(True)
    task.cancel()


class Ingest:
    """The ingest pipeline of one configured source."""

    def __init__(
        self,
        name: str,
        source: Source,
        *,
        config: Config,
        pm: pluggy.PluginManager,
        store: Store,
        notify: Callable[[list[str]], None],
    ) -> None:
        self.name = name
        self.source = source
        self.config = config
        self.pm = pm
        self.store = store
        #: told which sinks have new deliveries (the dispatcher's wake-up)
        self.notify = notify
        # the hooks' callers are looked up once; each keeps up with plugins registered later
        self._received = pm.hook.event_received
        self._normalised = pm.hook.event_normalised

    async def __call__(self, webhook: WebhookRequest) -> Outcome:
        """What becomes of one request (the steps are in the module's docstring)."""
        pm, source = self.pm, self.source
        try:
            self._authenticate(webhook)
            if self._received.get_hookimpls():
                await notify_observers(pm, "event_received", source=source, request=webhook)
            parsed = self._parse(webhook)
            event = (
                await transform_event(pm, parsed, source)
                if self._normalised.get_hookimpls()
                else parsed
            )
            if event is None:
                return Outcome("dropped", 200, {"status": "dropped"})
            event, sinks = self._route(event)
            try:
                stored = await within_deadline(
                    self.config, self.store.ingest(event, sinks), "ingest"
                )
            except StoreUnavailable as exc:
                log.error("source %s: cannot store event %s: %s", self.name, event.id, exc)
                message = "the event could not be stored; retry later"
                return Outcome.refusal(
                    "unavailable", 503, "unavailable", message, retry_after=exc.retry_after
                )
        except _Refused as refused:
            return refused.outcome
        return self._stored(event, sinks, stored)

    def _authenticate(self, webhook: WebhookRequest) -> None:
        try:
            self.source.authenticate(webhook)
        except AuthenticationError as exc:
            log.info("source %s: request refused: %s", self.name, exc.message)
            code = "forbidden" if exc.status == 403 else "unauthorized"
            raise _Refused(Outcome.refusal("unauthorized", exc.status, code, exc.message)) from None

    def _parse(self, webhook: WebhookRequest) -> Event:
        """The request as an event, once it is well-formed."""
        source = self.source
        try:
            event = source.parse(webhook)
        except PayloadError as exc:
            log.info("source %s: invalid payload: %s", self.name, exc)
            extra = {"field": exc.field} if exc.field else {}
            outcome = Outcome.refusal("invalid", 400, "invalid_payload", exc.message, **extra)
            raise _Refused(outcome) from None
        except Exception:
            log.exception(
                "source %s: the %s plugin failed to parse a request", self.name, source.type_name
            )
            raise _Refused(_parser_failed()) from None
        if nesting_exceeds(event.raw):
            message = f"the payload nests deeper than {MAX_NESTING} levels"
            raise _Refused(Outcome.refusal("invalid", 400, "invalid_payload", message))
        return event

    def _route(self, event: Event) -> tuple[Event, list[str]]:
        """The sinks the event goes to, and the event as stored (redacted unless a sink needs
        its credentials), serialised: a payload JSON cannot hold is refused here, not by the
        store (which reuses the JSON)."""
        config = self.config
        event_dict = event.to_dict() if config.needs_event_dict else None
        sinks = config.sinks_for(event.source, event.type, event_dict)
        if event.sensitive and not any(config.sinks[s].delivery.include_sensitive for s in sinks):
            # a credential (a Pelcro magic-link token) is stored only for a sink that asks for
            # it; otherwise it never reaches the disk
            event = event.redacted()
        try:
            event.to_json()
        except PayloadError as exc:  # parsed, but not storable as JSON (see Event.to_json)
            log.info("source %s: payload cannot be stored: %s", self.name, exc)
            raise _Refused(
                Outcome.refusal("invalid", 400, "invalid_payload", exc.message)
            ) from None
        except Exception:  # a field of the model holding what it cannot (see Event.to_json)
            log.exception(
                "source %s: the event made of a request cannot be stored (the %s plugin's, or"
                " an event_normalised hook's)",
                self.name,
                self.source.type_name,
            )
            raise _Refused(_parser_failed()) from None
        return event, sinks

    def _stored(self, event: Event, sinks: list[str], stored: IngestResult) -> Outcome:
        """Accepted, or a duplicate of an event stored before."""
        if not stored.accepted:
            log.info(
                "source %s: duplicate of %s (key %s)",
                self.name,
                stored.event_id,
                event.idempotency_key,
            )
            return Outcome("duplicate", 200, {"status": "duplicate", "event_id": stored.event_id})
        self.notify(sinks)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "source %s: accepted %s %s for %s",
                self.name,
                event.type,
                event.id,
                ", ".join(sinks) or "no sink",
                extra=event_for_log(event),
            )
        return Outcome(
            "accepted", 200, {"status": "accepted", "event_id": event.id, "sinks": sinks}
        )
