"""What a sink plugin implements: deliver one event somewhere, raising a retryable or permanent error."""

from __future__ import annotations

import abc
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from attrs import frozen

from eventrouter.errors import DeliveryError, PermanentError, RetryableError
from eventrouter.sources import NoOptions

if TYPE_CHECKING:
    import aiohttp

    from eventrouter.events import Event

__all__ = ["Sink", "SinkContext", "error_for_status", "retry_after_seconds"]


@frozen
class SinkContext:
    """What the core lends a sink when it starts.

    ``http`` is the one ClientSession every sink shares; ``base_dir`` is the directory relative
    paths in the config are read against (the config file's directory).
    """

    http: aiohttp.ClientSession
    base_dir: Path
    logger: logging.Logger


class Sink(abc.ABC):
    """Base class of a sink type; one instance per ``[sinks.NAME]`` table.

    ``deliver`` is awaited once per event and attempt, up to the sink's ``concurrency`` at a
    time (``deliver_batch`` once per batch instead, for a sink that implements it). Return
    normally when the event is delivered (durably, if the sink stores it); raise
    :class:`~eventrouter.errors.RetryableError` or :class:`~eventrouter.errors.PermanentError`
    otherwise. Any other exception counts as retryable.
    """

    type_name: ClassVar[str]
    Options: ClassVar[type] = NoOptions
    secret_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str, options: Any) -> None:
        self.name = name
        self.options = options

    def check(self) -> Iterable[str]:
        """Problems with the options that types alone cannot catch, as ``option: message``."""
        return ()

    async def start(self, context: SinkContext) -> None:
        """Open what the sink needs (called once before the first delivery)."""
        self.context = context

    @abc.abstractmethod
    async def deliver(self, event: Event) -> None:
        """Deliver ``event``; raise RetryableError or PermanentError when it cannot be."""

    async def deliver_batch(self, events: Sequence[Event]) -> Mapping[str, Exception] | None:
        """Deliver several events at once (optional: a sink that writes or calls in batches).

        A sink that implements it is handed up to its ``batch_size`` events per call, in the
        order they became due, with ``concurrency`` calls in flight; ``deliver`` is then not
        called. Return None (or an empty mapping) when every event is delivered, or map the id
        of each event that was not to its error (RetryableError or PermanentError; any other
        exception counts as retryable and is logged, as from ``deliver``); the others count as
        delivered. Raising fails the whole batch with that error. The sink's ``timeout`` applies
        to the whole call.
        """
        raise NotImplementedError

    @property
    def delivers_batches(self) -> bool:
        """Whether this sink type implements :meth:`deliver_batch`."""
        return type(self).deliver_batch is not Sink.deliver_batch

    async def close(self) -> None:
        """Flush and release what ``start`` opened (called once at shutdown)."""


RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # "inf", "nan" and 1e400 are not a time to wait: the sink's own schedule applies
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_for_status(
    status: int,
    *,
    detail: str,
    retry_after: str | None = None,
    response_excerpt: str | None = None,
) -> DeliveryError:
    """The error a sink should raise for an unsuccessful HTTP answer.

    408, 409, 425, 429 and 5xx are retryable (honouring ``Retry-After``); other statuses are
    permanent: sending the same request again would fail the same way. The error carries
    ``status`` and ``response_excerpt`` (default: ``detail``) for the attempt history.
    """
    message = f"HTTP {status}: {detail}"[:500]
    excerpt = detail if response_excerpt is None else response_excerpt
    if status in RETRYABLE_STATUSES or status >= 500:
        return RetryableError(
            message,
            retry_after=retry_after_seconds(retry_after),
            status=status,
            response_excerpt=excerpt,
        )
    return PermanentError(message, status=status, response_excerpt=excerpt)
