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
import enum
from collections.abc import Callable, Sequence
from datetime import datetime

from attrs import frozen

from eventrouter.circuit import SinkControl
from eventrouter.events import Event

__all__ = [
    "LOST_WORKER",
    "DeadLetter",
    "Delivery",
    "DeliveryRecord",
    "DeliveryState",
    "IngestResult",
    "Store",
    "StoredEvent",
]


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    INFLIGHT = "inflight"
    DONE = "done"
    DEAD = "dead"


@frozen
class IngestResult:
    """``accepted`` is False when the idempotency key was seen within the window."""

    accepted: bool
    event_id: str


#: the error a takeover records for the attempt whose worker vanished (its lease ran out)
LOST_WORKER = "worker lost during delivery (its lease ran out)"


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


@frozen
class DeliveryRecord:
    """The state of one (event, sink) delivery, as listings show it."""

    sink: str
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None


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
    async def ack(self, delivery: Delivery) -> None:
        """Mark a claimed delivery done."""

    @abc.abstractmethod
    async def retry_later(self, delivery: Delivery, *, at: datetime, error: str) -> None:
        """Count a failed attempt and make the delivery due again at ``at``."""

    @abc.abstractmethod
    async def dead_letter(
        self, delivery: Delivery, *, error: str, count_attempt: bool = True
    ) -> None:
        """Count a failed attempt and give up on the delivery, keeping ``error`` as the reason.

        ``count_attempt=False``: give up without attempting it again (its attempts, lost ones
        included, are used up already)."""

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
        self, *, sink: str | None = None, event_ids: Sequence[str] = ()
    ) -> int:
        """Make dead letters pending again (attempts reset); returns how many."""

    @abc.abstractmethod
    async def replay(self, event_id: str, sinks: Sequence[str]) -> int:
        """Deliver a stored event again to ``sinks``; returns how many deliveries were queued."""

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

    @abc.abstractmethod
    async def release(self, delivery: Delivery, *, at: datetime, error: str) -> None:
        """Make a claimed delivery pending again at ``at`` without counting the attempt (its
        sink's circuit was not closed: the outage is not the event's)."""
