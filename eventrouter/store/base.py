"""The store contract every backend implements (SQLite embedded, Redis Streams distributed).

An event is stored together with one delivery per sink it is routed to. A delivery is
*pending* until a worker *claims* it (leased for a while), then *acked* (done), *retried later*
(pending again with a due time) or *dead-lettered*. A claim whose lease runs out (the worker
died) becomes claimable again, so delivery is at-least-once; taking it over counts the lost
attempt (``attempts`` and ``lost`` grow by one), so a delivery that kills every worker that
tries it runs out of attempts instead of going round for ever.
"""

from __future__ import annotations

import abc
import asyncio
import enum
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from attrs import frozen

from eventrouter.circuit import SinkControl
from eventrouter.events import Event, without_value

if TYPE_CHECKING:
    from eventrouter.query import Cursor, EventFilter

__all__ = [
    "CONSOLE_ACTION",
    "LOST_WORKER",
    "UNREADABLE",
    "Attempt",
    "AttemptOutcome",
    "DeadLetter",
    "Delivery",
    "DeliveryRecord",
    "DeliveryState",
    "IngestResult",
    "Settlement",
    "Store",
    "StoredEvent",
    "Trigger",
]


T = TypeVar("T")

#: a claim rebuilds this many events from their JSON, then lets the event loop run other work
DECODE_SLICE = 16


async def claimed_deliveries(
    rows: Iterable[T], make: Callable[[T], Delivery]
) -> tuple[list[Delivery], list[tuple[T, str]]]:
    """``make(row)`` for each claimed row (it decodes the event: the costly part of a claim),
    letting requests in between slices of a big claim.

    Returns the deliveries and the rows whose stored event could not be read, each with the
    reason (:func:`unreadable`): the store dead-letters those, so that one event its reader
    refuses does not hold up the deliveries claimed with it, claim after claim.
    """
    deliveries = []
    refused = []
    for n, row in enumerate(rows, 1):
        try:
            deliveries.append(make(row))
        except ValueError as error:  # the stored reader's refusal (Event.from_stored_json)
            refused.append((row, unreadable(error)))
        if n % DECODE_SLICE == 0:
            await asyncio.sleep(0)
    return deliveries, refused


def unreadable(error: ValueError) -> str:
    """The dead letter's error of a delivery whose stored event the reader refused: what was
    wrong and where, not the value (:func:`~eventrouter.events.without_value`)."""
    return f"{UNREADABLE}: {without_value(error)}"


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    INFLIGHT = "inflight"
    DONE = "done"
    DEAD = "dead"


class Trigger(enum.StrEnum):
    """What made a delivery due: what its next attempt is recorded as (a replay or dead-letter
    retry whose action id starts with :data:`CONSOLE_ACTION` is recorded as ``console``)."""

    FIRST = "first"
    RETRY = "retry"
    REPLAY = "replay"
    DLQ_RETRY = "dlq_retry"
    CONSOLE = "console"


#: the start of the action id of a replay or retry made in the console (``console:alice:...``):
#: the attempts it causes are recorded with the trigger ``console``
CONSOLE_ACTION = "console:"


class AttemptOutcome(enum.StrEnum):
    DONE = "done"
    RETRY = "retry"
    DEAD = "dead"
    LOST = "lost"


@frozen(kw_only=True)
class Attempt:
    """One delivery attempt, as the attempt history keeps it.

    ``status`` and ``response_excerpt`` are what the sink reported (an HTTP answer), masked
    like every stored text; ``duration`` is in seconds.
    """

    sink: str
    number: int
    started_at: datetime
    duration: float
    outcome: AttemptOutcome
    trigger: Trigger
    status: int | None = None
    error: str | None = None
    response_excerpt: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The attempt as JSON-ready values (listings, the Redis store's history)."""
        return {
            "sink": self.sink,
            "number": self.number,
            "started_at": self.started_at.isoformat(),
            "duration": self.duration,
            "outcome": self.outcome.value,
            "trigger": self.trigger.value,
            "status": self.status,
            "error": self.error,
            "response_excerpt": self.response_excerpt,
        }


@frozen
class IngestResult:
    """``accepted`` is False when the idempotency key was seen within the window."""

    accepted: bool
    event_id: str


#: the error a takeover records for the attempt whose worker vanished (its lease ran out)
LOST_WORKER = "worker lost during delivery (its lease ran out)"

#: the start of the error of a delivery dead-lettered because its stored event could not be
#: read (:func:`claimed_deliveries`)
UNREADABLE = "the stored event could not be read"


@frozen
class Delivery:
    """A claimed delivery: deliver ``event`` to ``sink``; ``attempts`` made before this one."""

    event: Event
    sink: str
    attempts: int
    #: backend-specific handle (a stream entry id, a lease) used to ack or retry this claim only
    token: str
    #: how many of ``attempts`` ended with their worker lost (taken over after the lease)
    lost: int = 0
    #: what made this attempt due (recorded with it)
    trigger: Trigger = Trigger.FIRST


@frozen(kw_only=True)
class Settlement:
    """The outcome of one claimed delivery, for :meth:`Store.settle` to record with others.

    ``state``: DONE (delivered), PENDING (due again at ``at``) or DEAD (given up, ``error`` the
    reason). ``counted``: whether the attempt counts towards the delivery's attempts (not when
    its sink's circuit was not closed, nor when a delivery is given up without an attempt).
    """

    delivery: Delivery
    state: DeliveryState
    at: datetime | None = None
    error: str | None = None
    counted: bool = True
    attempt: Attempt | None = None


@frozen
class DeliveryRecord:
    """The state of one (event, sink) delivery, as listings show it."""

    sink: str
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    #: when its state last changed (a dead letter's: when it was given up on)
    updated_at: datetime | None = None


@frozen
class StoredEvent:
    event: Event
    deliveries: tuple[DeliveryRecord, ...]


@frozen
class DeadLetter:
    event_id: str
    source: str
    type: str
    sink: str
    attempts: int
    reason: str
    dead_at: datetime


class Store(abc.ABC):
    """Durable events, their deliveries, de-duplication and dead letters."""

    @abc.abstractmethod
    async def open(self, *, lazy: bool = False) -> None:
        """Connect and create what is missing; raise StoreUnavailable when it cannot.

        ``lazy``: a store on a server that does not answer yet (Redis) opens anyway and
        connects on first use, each operation raising StoreUnavailable until then (servers
        start and recover by themselves); a configuration that can never work still raises.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish pending writes and disconnect."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers (``/readyz``)."""

    @abc.abstractmethod
    async def ingest(self, event: Event, sinks: Sequence[str]) -> IngestResult:
        """De-duplicate on ``event.idempotency_key`` and, if new, durably store the event and
        one pending delivery per sink. Returns only once it is durable. Raises StoreUnavailable
        (or Overloaded) when it cannot store it."""

    @abc.abstractmethod
    async def claim(self, sink: str, *, limit: int, lease: float) -> list[Delivery]:
        """Up to ``limit`` due deliveries for ``sink``, leased for ``lease`` seconds.

        A delivery still claimed by a worker whose lease (as that worker set it) has ended is
        taken over, counting the lost attempt: ``attempts`` and ``lost`` one more, the error
        :data:`LOST_WORKER`."""

    @abc.abstractmethod
    async def next_due(self, sink: str) -> datetime | None:
        """When the next delivery for ``sink`` becomes due (None when there is none)."""

    @abc.abstractmethod
    async def settle(self, settlements: Sequence[Settlement]) -> None:
        """Record the outcomes of claims, a batch delivery's or a single attempt's, together (one
        transaction, one round trip): each is ignored if its claim is no longer current (taken
        over, or recorded already), and its ``attempt`` joins the history in the same write.

        A pending settlement without ``at`` is a ValueError. Outcomes may be lost in a power
        cut, never half-written: a delivery whose outcome is lost stays claimed and is taken over
        when its lease ends, as after a crash (at-least-once)."""

    async def ack(self, delivery: Delivery, *, attempt: Attempt | None = None) -> None:
        """Mark a claimed delivery done; ``attempt`` joins its history in the same write."""
        await self.settle(
            [Settlement(delivery=delivery, state=DeliveryState.DONE, attempt=attempt)]
        )

    async def retry_later(
        self, delivery: Delivery, *, at: datetime, error: str, attempt: Attempt | None = None
    ) -> None:
        """Count a failed attempt and make the delivery due again at ``at``."""
        pending = Settlement(
            delivery=delivery, state=DeliveryState.PENDING, at=at, error=error, attempt=attempt
        )
        await self.settle([pending])

    async def dead_letter(
        self,
        delivery: Delivery,
        *,
        error: str,
        count_attempt: bool = True,
        attempt: Attempt | None = None,
    ) -> None:
        """Count a failed attempt and give up on the delivery, keeping ``error`` as the reason.

        ``count_attempt=False``: give up without attempting it again (its attempts, lost ones
        included, are used up already)."""
        dead = Settlement(
            delivery=delivery,
            state=DeliveryState.DEAD,
            error=error,
            counted=count_attempt,
            attempt=attempt,
        )
        await self.settle([dead])

    @abc.abstractmethod
    async def get_event(self, event_id: str) -> StoredEvent | None:
        """One event and the state of its deliveries."""

    @abc.abstractmethod
    async def list_events(
        self, *, limit: int = 50, source: str | None = None, type: str | None = None
    ) -> list[StoredEvent]:
        """The most recently received events, newest first."""

    @abc.abstractmethod
    async def list_dead_letters(
        self, *, sink: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        """Dead-lettered deliveries, newest first."""

    @abc.abstractmethod
    async def retry_dead_letters(
        self, *, sink: str | None = None, event_ids: Sequence[str] = (), action: str | None = None
    ) -> int:
        """Make dead letters pending again (attempts reset); returns how many.

        ``action``: a bulk action's id, remembered on each delivery revived; a delivery that
        action revived already is left alone (running the action again never does it twice)."""

    @abc.abstractmethod
    async def replay(
        self, event_id: str, sinks: Sequence[str], *, action: str | None = None
    ) -> int:
        """Deliver a stored event again to ``sinks``; returns how many deliveries were queued.

        ``action``: as for :meth:`retry_dead_letters`."""

    @abc.abstractmethod
    async def queue_depth(self) -> dict[str, dict[str, int]]:
        """Deliveries by sink and state (pending, inflight, dead)."""

    async def purge(self, *, retention: float) -> int:
        """Forget expired idempotency keys and fully delivered events older than ``retention``."""
        return 0

    @property
    def pending_writes(self) -> int:
        """Writes accepted but not yet durable (for back-pressure and metrics)."""
        return 0

    async def watch(self, sinks: Sequence[str], wake: Callable[[str], None]) -> None:
        """Call ``wake(sink)`` whenever any process queues work for one of ``sinks``, until
        cancelled. A backend that cannot tell returns at once and workers poll instead."""
        return

    @property
    def watching(self) -> bool:
        """Whether :meth:`watch` is listening now (workers may then poll less often)."""
        return False

    # -- sink control: circuit breaker, pause, rate limit (see eventrouter.circuit) -----------

    @abc.abstractmethod
    async def get_control(self, sink: str) -> SinkControl:
        """The sink's shared control record (a fresh, closed one when none was written)."""

    @abc.abstractmethod
    async def put_control(self, sink: str, control: SinkControl) -> bool:
        """Write ``control`` if the stored record's version is still ``control.version``
        (stored with the next version); False when another writer got there first. Wakes
        the sink's workers (a resume takes effect at once)."""

    @abc.abstractmethod
    async def rate_permit(self, sink: str, *, interval: float) -> float:
        """Take one of the sink's permits, one every ``interval`` seconds (0.0 returned), or
        return the seconds to wait before asking again. Shared by every process on Redis,
        by the process on SQLite."""

    async def release(
        self, delivery: Delivery, *, at: datetime, error: str, attempt: Attempt | None = None
    ) -> None:
        """Make a claimed delivery pending again at ``at`` without counting the attempt (its
        sink's circuit was not closed: the outage is not the event's); ``attempt``, when one
        was made, still joins the history."""
        released = Settlement(
            delivery=delivery,
            state=DeliveryState.PENDING,
            at=at,
            error=error,
            counted=False,
            attempt=attempt,
        )
        await self.settle([released])

    # -- queries (eventrouter.query), attempt history, heartbeats (issue 13) ---------------

    #: the store's name in messages ("sqlite", "redis")
    backend_name: ClassVar[str] = "store"
    #: the EventFilter fields this backend can answer (eventrouter.query.FILTER_NAMES)
    supported_filters: ClassVar[frozenset[str]] = frozenset()

    @abc.abstractmethod
    async def find_events(
        self, where: EventFilter, *, limit: int, after: Cursor | None = None
    ) -> list[StoredEvent]:
        """Up to ``limit`` events matching ``where``, newest first (received time, then id),
        strictly older than ``after``. Only ``supported_filters`` are used."""

    @abc.abstractmethod
    async def find_deliveries(
        self, where: EventFilter, *, limit: int, after: Cursor | None = None
    ) -> list[tuple[Cursor, str]]:
        """The deliveries of the events matching ``where`` (only those to ``where.sink``, in
        ``where.state``, when given), newest event first: (the event's cursor, sink) pairs. Bulk
        actions walk them in batches."""

    @abc.abstractmethod
    async def count_deliveries(self, where: EventFilter) -> dict[str, int]:
        """How many deliveries :meth:`find_deliveries` would yield, by sink."""

    @abc.abstractmethod
    async def list_attempts(self, event_id: str) -> list[Attempt]:
        """Every recorded attempt of ``event_id``'s deliveries, in the order recorded."""

    @abc.abstractmethod
    async def heartbeat(self, worker: str, *, ttl: float) -> None:
        """Say that ``worker`` (a process delivering) is alive, for ``ttl`` seconds."""

    @abc.abstractmethod
    async def last_heartbeat(self) -> datetime | None:
        """When a delivering process last said it was alive (None: none within its ttl)."""
