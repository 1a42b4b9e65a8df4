"""One query layer over the store: the CLI, the JSON API and the console all find events here.

A :class:`EventFilter` says which events (every field optional, all of them must match); a
:class:`PageRequest` says how many and from where (an opaque cursor from the previous
:class:`EventPage`). Pages are newest first and keyset-paginated on (received time, event id),
so a page costs the same on a big store as on a small one, and events arriving meanwhile never
shift a page. The stores do the work through their contract (:meth:`Store.find_events` ...);
a filter a backend cannot answer fast is refused with a :class:`QueryError` naming it.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import secrets
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Literal

import attrs
from attrs import frozen

from eventrouter.errors import EventRouterError
from eventrouter.events import Event
from eventrouter.payload import email_address, phone_e164
from eventrouter.store.base import (
    Attempt,
    AttemptOutcome,
    DeadLetter,
    DeliveryState,
    Store,
    StoredEvent,
    Trigger,
)

__all__ = [
    "FILTER_NAMES",
    "Attempt",
    "AttemptOutcome",
    "BulkAction",
    "Cursor",
    "DeadLetterPage",
    "DeliveryPlan",
    "EventFilter",
    "EventPage",
    "PageRequest",
    "QueryError",
    "Trigger",
    "delivery_plan",
    "event_with_attempts",
    "find_dead_letters",
    "find_events",
    "indexed_values",
    "normalise_contact",
    "run_bulk",
    "timeline",
]

#: the most events one page may hold
MAX_LIMIT = 1000


class QueryError(EventRouterError):
    """A query cannot be answered as asked: ``field`` names the filter (or ``cursor``, ``limit``).

    The CLI shows it as ``--FIELD: message``; the JSON API answers 400 with it.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def normalise_contact(value: str) -> str:
    """A contact as the store indexes it: an email lowercased, a phone in any format as E.164.

    Raises QueryError when ``value`` is neither (a phone needs its country code: ``+52...``).
    """
    text = value.strip()
    if "@" in text:
        email = email_address(text)
        if email is None:
            raise QueryError("contact", f"{value!r} is not an email address")
        return email.lower()
    phone = phone_e164(text)
    if phone is None:
        raise QueryError(
            "contact",
            f"{value!r} is neither an email nor a phone number with its country code (+52...)",
        )
    return phone


@frozen(kw_only=True)
class EventFilter:
    """Which events: every field given must match (None: any).

    ``type`` is a glob (``call.*``); ``state`` and ``sink`` match events with at least one
    delivery in that state / to that sink (both: one delivery to that sink in that state);
    ``since`` is inclusive, ``until`` exclusive (received time); ``contact`` is normalised
    (:func:`normalise_contact`); ``text`` is a substring of the provider's raw payload.
    """

    source: str | None = None
    type: str | None = None
    state: DeliveryState | None = None
    sink: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    idempotency_key: str | None = None
    contact: str | None = None
    call_id: str | None = None
    campaign_id: str | None = None
    text: str | None = None

    @classmethod
    def build(
        cls,
        *,
        source: str | None = None,
        type: str | None = None,
        state: str | DeliveryState | None = None,
        sink: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        idempotency_key: str | None = None,
        contact: str | None = None,
        call_id: str | None = None,
        campaign_id: str | None = None,
        text: str | None = None,
    ) -> EventFilter:
        """A filter from what a user typed: the contact normalised, the state checked, empty
        strings read as "any"; raises QueryError naming the filter that is wrong."""
        if state:
            try:
                state = DeliveryState(state)
            except ValueError:
                choices = ", ".join(s.value for s in DeliveryState)
                raise QueryError("state", f"{state!r} is not one of {choices}") from None
        for name, moment in (("since", since), ("until", until)):
            if moment is not None and moment.tzinfo is None:
                raise QueryError(name, "needs a time zone (e.g. 2026-01-31T10:00:00+00:00)")
        if since is not None and until is not None and since >= until:
            raise QueryError("since", "must be earlier than --until")
        return cls(
            source=source or None,
            type=type or None,
            state=DeliveryState(state) if state else None,
            sink=sink or None,
            since=since,
            until=until,
            idempotency_key=idempotency_key or None,
            contact=normalise_contact(contact) if contact else None,
            call_id=call_id or None,
            campaign_id=campaign_id or None,
            text=text or None,
        )

    def used(self) -> tuple[str, ...]:
        """The names of the filters set, in declaration order."""
        return tuple(name for name in FILTER_NAMES if getattr(self, name) is not None)

    def matches(self, stored: StoredEvent) -> bool:
        """Whether ``stored`` passes every filter: the reference a store's indexes must agree
        with (the Redis store checks the events its index read against it)."""
        event = stored.event
        key, phone, email, call_id, campaign_id = indexed_values(event)
        received = event.received_at
        checks = (
            self.source is None or event.source == self.source,
            self.type is None or fnmatch.fnmatchcase(event.type, self.type),
            self.since is None or received >= self.since,
            self.until is None or received < self.until,
            self.idempotency_key is None or key == self.idempotency_key,
            self.contact is None or self.contact in (phone, email),
            self.call_id is None or call_id == self.call_id,
            self.campaign_id is None or campaign_id == self.campaign_id,
            self.text is None
            or self.text.lower() in json.dumps(event.raw, ensure_ascii=False).lower(),
            (self.state is None and self.sink is None)
            or any(
                self.state in (None, record.state) and self.sink in (None, record.sink)
                for record in stored.deliveries
            ),
        )
        return all(checks)


def indexed_values(
    event: Event,
) -> tuple[str | None, str | None, str | None, str | None, str | None]:
    """The normalised fields the stores index: idempotency key, contact phone (E.164), contact
    email (lowercased), call id, campaign id."""
    data = event.data
    contact, call, campaign = data.contact, data.call, data.campaign
    return (
        event.idempotency_key,
        contact.phone if contact else None,
        contact.email.lower() if contact and contact.email else None,
        call.id if call else None,
        campaign.id if campaign else None,
    )


#: every filter of :class:`EventFilter`, by name (the README's support table lists these)
FILTER_NAMES: tuple[str, ...] = (
    "source",
    "type",
    "state",
    "sink",
    "since",
    "until",
    "idempotency_key",
    "contact",
    "call_id",
    "campaign_id",
    "text",
)


@frozen
class Cursor:
    """Where a page ends: the (received time, event id) of its last event; the next page starts
    strictly after it (older)."""

    received_at: float
    event_id: str

    def encode(self) -> str:
        """The opaque string handed to clients."""
        raw = f"{self.received_at!r}|{self.event_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Read back :meth:`encode`; raises QueryError for anything else."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            received, _, event_id = raw.partition("|")
            if not event_id:
                raise ValueError(text)
            return cls(received_at=float(received), event_id=event_id)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise QueryError("cursor", "not a cursor this server handed out") from None


@frozen(kw_only=True)
class PageRequest:
    """How many events (1..MAX_LIMIT) and from where (a cursor from the previous page)."""

    limit: int = 50
    cursor: str | None = None

    def decoded(self) -> Cursor | None:
        """The cursor, checked; raises QueryError for a bad limit or cursor."""
        if not 1 <= self.limit <= MAX_LIMIT:
            raise QueryError("limit", f"must be between 1 and {MAX_LIMIT}")
        return None if self.cursor is None else Cursor.decode(self.cursor)


@frozen
class EventPage:
    """A page of events, newest first; ``next_cursor`` is None on the last page."""

    events: tuple[StoredEvent, ...]
    next_cursor: str | None


@frozen
class DeliveryPlan:
    """What a bulk action on a filter would touch: deliveries per sink (dry runs, confirmations)."""

    by_sink: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_sink.values())


def _check_supported(store: Store, where: EventFilter) -> None:
    missing = [name for name in where.used() if name not in store.supported_filters]
    if missing:
        raise QueryError(
            missing[0],
            f"the {store.backend_name} store cannot filter on {missing[0]} "
            "(see the README's table of filters by store)",
        )


async def find_events(
    store: Store, where: EventFilter, page: PageRequest = PageRequest()
) -> EventPage:
    """One page of the events matching ``where``, newest first."""
    after = page.decoded()
    _check_supported(store, where)
    found = await store.find_events(where, limit=page.limit + 1, after=after)
    events = tuple(found[: page.limit])
    next_cursor = None
    if len(found) > page.limit:
        last = events[-1].event
        next_cursor = Cursor(last.received_at.timestamp(), last.id).encode()
    return EventPage(events=events, next_cursor=next_cursor)


@frozen
class DeadLetterPage:
    """The dead letters of a page of events, newest event first; ``next_cursor`` is None on the
    last page."""

    letters: tuple[DeadLetter, ...]
    next_cursor: str | None


async def find_dead_letters(
    store: Store, where: EventFilter, page: PageRequest = PageRequest()
) -> DeadLetterPage:
    """The dead letters of the events matching ``where`` (a page of events: each event's dead
    deliveries, to ``where.sink`` only when it is set), newest event first."""
    if where.state not in (None, DeliveryState.DEAD):
        raise QueryError("state", "dead letters are the deliveries in the state dead")
    found = await find_events(store, attrs.evolve(where, state=DeliveryState.DEAD), page)
    letters = tuple(
        DeadLetter(
            event_id=stored.event.id,
            source=stored.event.source,
            type=stored.event.type,
            sink=record.sink,
            attempts=record.attempts,
            reason=record.last_error or "",
            # both stores record it (None only in a record made by hand: the event's time then)
            dead_at=record.updated_at or stored.event.received_at,
        )
        for stored in found.events
        for record in stored.deliveries
        if record.state is DeliveryState.DEAD and where.sink in (None, record.sink)
    )
    return DeadLetterPage(letters=letters, next_cursor=found.next_cursor)


async def timeline(
    store: Store,
    *,
    contact: str | None = None,
    campaign_id: str | None = None,
    page: PageRequest = PageRequest(),
) -> EventPage:
    """Everything that happened to a contact or in a campaign, across providers, newest first.

    Exactly one of ``contact`` (any phone format or an email) and ``campaign_id``.
    """
    if (contact is None) == (campaign_id is None):
        raise QueryError("contact", "give a contact or a campaign (one of them)")
    where = EventFilter.build(contact=contact, campaign_id=campaign_id)
    return await find_events(store, where, page)


async def event_with_attempts(
    store: Store, event_id: str
) -> tuple[StoredEvent, tuple[Attempt, ...]] | None:
    """One event, its deliveries and every attempt made (oldest first), or None."""
    stored = await store.get_event(event_id)
    if stored is None:
        return None
    return stored, tuple(await store.list_attempts(event_id))


async def delivery_plan(
    store: Store, where: EventFilter, *, sinks: Sequence[str] | None = None
) -> DeliveryPlan:
    """How many deliveries of the events matching ``where`` a bulk action would touch, by sink
    (only ``sinks`` when given)."""
    _check_supported(store, where)
    counts = await store.count_deliveries(where)
    if sinks is not None:
        counts = {sink: n for sink, n in counts.items() if sink in sinks}
    return DeliveryPlan(by_sink=dict(sorted(counts.items())))


BulkKind = Literal["replay", "dlq_retry"]


@frozen(kw_only=True)
class BulkAction:
    """Replay, or retry the dead letters of, every delivery matching a filter.

    ``id`` marks each delivery the action queues (the stores skip a delivery it marked already),
    so an action interrupted and run again with the same id (``--resume ID``) does the rest and
    nothing twice. The id holds the time the action started, which bounds it (``until``): events
    received later are not part of it.
    """

    kind: BulkKind
    where: EventFilter
    #: only deliveries to these sinks (the configured ones: nothing would deliver to others)
    sinks: frozenset[str]
    id: str

    @classmethod
    def start(
        cls,
        kind: BulkKind,
        where: EventFilter,
        *,
        sinks: Collection[str],
        now: datetime | None = None,
        by: str | None = None,
    ) -> BulkAction:
        """A new action on ``where`` (bounded by now when it has no ``until``); ``by`` starts its
        id (``console:alice``: its attempts are recorded with the trigger ``console``)."""
        until = where.until or now or datetime.now(UTC)
        action_id = f"{kind}-{round(until.timestamp() * 1_000_000)}-{secrets.token_hex(4)}"
        if by:
            action_id = f"{by}:{action_id}"
        return cls._made(kind, where, sinks=sinks, action_id=action_id)

    @classmethod
    def resume(
        cls, kind: BulkKind, where: EventFilter, *, sinks: Collection[str], action_id: str
    ) -> BulkAction:
        """The action ``action_id`` again (its filters given again): it does what is left."""
        started_kind, _, rest = action_id.rpartition("-")[0].rpartition("-")
        if started_kind.rpartition(":")[2] != kind or not rest.isdigit():
            raise QueryError("resume", f"{action_id!r} is not the id of an earlier {kind} action")
        return cls._made(kind, where, sinks=sinks, action_id=action_id)

    @classmethod
    def _made(
        cls, kind: BulkKind, where: EventFilter, *, sinks: Collection[str], action_id: str
    ) -> BulkAction:
        micros = int(action_id.rpartition("-")[0].rpartition("-")[2])
        until = datetime.fromtimestamp(micros / 1_000_000, UTC)
        if where.until is not None:
            until = min(until, where.until)
        if kind == "dlq_retry":
            if where.state not in (None, DeliveryState.DEAD):
                raise QueryError("state", "dlq retry acts on dead letters only")
            where = attrs.evolve(where, state=DeliveryState.DEAD)
        bounded = attrs.evolve(where, until=until)
        return cls(kind=kind, where=bounded, sinks=frozenset(sinks), id=action_id)


async def run_bulk(
    store: Store,
    action: BulkAction,
    *,
    batch: int = 500,
    progress: Callable[[int], None] = lambda walked: None,
) -> int:
    """Carry ``action`` out, ``batch`` events at a time, newest first; how many deliveries it
    queued. ``progress(n)`` hears of every batch walked (n deliveries). Safe beside running
    workers: each delivery changes in one atomic store operation."""
    after: Cursor | None = None
    queued = 0
    while True:
        found = await store.find_deliveries(action.where, limit=batch, after=after)
        if not found:
            return queued
        by_sink: dict[str, list[str]] = {}
        for cursor, sink in found:
            if sink in action.sinks:
                by_sink.setdefault(sink, []).append(cursor.event_id)
        if action.kind == "dlq_retry":
            for sink, event_ids in by_sink.items():
                queued += await store.retry_dead_letters(
                    sink=sink, event_ids=event_ids, action=action.id
                )
        else:
            by_event: dict[str, list[str]] = {}
            for sink, event_ids in by_sink.items():
                for event_id in event_ids:
                    by_event.setdefault(event_id, []).append(sink)
            for event_id, sinks in by_event.items():
                queued += await store.replay(event_id, sinks, action=action.id)
        progress(len(found))
        after = found[-1][0]
