"""The distributed store: Redis Streams, so several eventrouter processes share one queue.

Layout (every key starts with ``[store] key_prefix``, ``P`` below):

- ``P:event:ID`` a hash: the event JSON (``body``), ``source``, ``type``, ``received`` and one
  ``sink:NAME`` field per delivery holding its record (state, attempts, due, error, entry ids);
- ``P:events`` a stream logging every stored event (listings, newest first, and purging);
- ``P:dedupe:SHA`` the idempotency key of source + ``idempotency_key``, set only if absent and
  with a TTL of ``dedupe_window`` (``PX``), so Redis forgets it by itself;
- ``P:queue:SINK`` a stream per sink with one entry per delivery to make, read through the
  consumer group ``workers`` (each store instance is one consumer): ``XREADGROUP`` hands an
  entry to one worker only; ack, retry and dead-letter ``XACK`` and ``XDEL`` it, so the stream
  holds only deliveries still to make;
- ``P:lease:SINK`` a sorted set of claimed deliveries scored by the end of the lease the
  claiming worker took. A claim takes over (``XCLAIM``) the entries whose lease has ended
  there (their worker died), whatever lease the taking worker uses itself, so processes whose
  sinks' timeouts differ (a rolling deploy) neither steal live deliveries nor miss dead ones;
  the takeover counts the lost attempt, so a delivery that kills its worker runs out of
  attempts;
- ``P:retry:SINK`` a sorted set of deliveries waiting for a retry, scored by due time; a claim
  moves the due ones back into the stream, ``next_due`` reads the lowest score (no busy polling);
- ``P:dead:SINK`` a stream of dead letters;
- ``P:sinks`` the set of sinks that have a queue;
- ``P:idx:KIND:VALUE`` the query layer's indexes: sorted sets of event ids scored by received
  time, one per source, type, idempotency key, contact (E.164 phone, lowercased email), call
  and campaign, and ``P:idx:all:`` of every event; ingest adds an event to its sets (named in
  its hash's ``idx`` field), purge removes it;
- ``P:attempts:ID`` a list of the event's delivery attempts (JSON), appended by the script
  that records each outcome; purged with the event;
- ``P:layout`` the version of this layout (:data:`LAYOUT_VERSION`), checked at start;
- ``P:heartbeats`` and ``P:heartbeats-seen`` the processes delivering, by heartbeat expiry
  and last heartbeat;
- ``P:wake:SINK`` a pub/sub channel (not a key): every script that makes work for a sink
  (ingest, a retry scheduled, a dead letter revived, a replay) publishes on it, and the workers
  listening (:meth:`RedisStore.watch`) claim at once instead of polling.

Every operation that changes state is one Lua script (``lua/NAME.lua``, called through the
typed methods of :mod:`eventrouter.store.scripts`), so it is atomic (ingest: dedupe key, event
hash and one ``XADD`` per sink). Scheduling uses the Redis server's clock, so processes
whose clocks disagree a little still agree on what is due; times shown in listings are the
processes' own.

Durability: ingest returns once Redis has executed the write, so what survives a crash depends
on Redis persistence. Run Redis with ``appendonly yes`` and ``appendfsync everysec`` (up to a
second of acknowledged events lost if the host crashes) or ``always`` (none lost), and with
``maxmemory-policy noeviction``; :meth:`RedisStore.open` warns otherwise. The scripts touch
keys they compute, so this needs one Redis server (or primary, found through Sentinel with
``[store] sentinels``), not Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from eventrouter.circuit import SinkControl
from eventrouter.errors import Overloaded, StoreUnavailable
from eventrouter.events import Event
from eventrouter.query import FILTER_NAMES, Cursor, indexed_values
from eventrouter.store.base import (
    LOST_WORKER,
    Attempt,
    AttemptOutcome,
    DeadLetter,
    Delivery,
    DeliveryRecord,
    DeliveryState,
    IngestResult,
    Settlement,
    Store,
    StoredEvent,
    Trigger,
    claimed_deliveries,
)
from eventrouter.store.scripts import EndClaim, Keys, Outcome, Scripts, number

if TYPE_CHECKING:
    from eventrouter.query import EventFilter

__all__ = ["RedisStore"]

log = logging.getLogger("eventrouter.store")

#: a consumer with nothing pending that has been idle this long (ms) belonged to a dead process
STALE_CONSUMER_MS = 3600 * 1000
#: how many entries listings and purges read per round trip
PAGE = 200
#: after a failed attempt to reach the server, callers within this many seconds fail at once
RECONNECT_INTERVAL = 0.5
#: the wait between attempts to listen for queued work grows from the first to the second
WATCH_RETRY = (0.1, 5.0)
#: the version of the key layout this code reads and writes (``P:layout``); 0 (no key): written
#: before query indexes and attempt histories, indexed at start
LAYOUT_VERSION = 1


#: a stream entry as the client returns it (typed for any client; ours decodes replies)
RawEntry = tuple[bytes | str | None, Mapping[bytes | str, bytes | str] | None]


def _text(value: bytes | str | None) -> str:
    """A reply as text: the client decodes replies (``decode_responses``), and a missing value
    (a field that is not there) reads as ''."""
    if isinstance(value, bytes):
        return value.decode()
    return value or ""


def _fields(raw: Mapping[bytes | str, bytes | str] | None) -> dict[str, str]:
    """A hash (or a stream entry's fields) as text."""
    return {_text(name): _text(value) for name, value in (raw or {}).items()}


def _entries(page: Iterable[RawEntry] | None) -> list[tuple[str, dict[str, str]]]:
    """Stream entries (``XRANGE``, ``XREVRANGE``) as (entry id, fields), text throughout."""
    return [(_text(entry_id), _fields(fields)) for entry_id, fields in page or ()]


async def _members(client: Redis, key: str) -> list[str]:
    """The members of a set, sorted."""
    return sorted(map(_text, await client.smembers(key)))


def _ts(value: str | float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(float(value), UTC)


def _entry_order(entry_id: str) -> tuple[int, int]:
    millis, _, seq = entry_id.partition("-")
    return int(millis), int(seq or 0)


def _address(entry: str) -> tuple[str, int]:
    """``"host:port"`` (a Sentinel) as a (host, port) pair."""
    host, _, port = entry.rpartition(":")
    return host.strip("[]"), int(port)


def _where(url: str) -> str:
    """``url`` without credentials or query (which may hold a password), for messages."""
    try:
        parts = urlsplit(url)
        netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return "the configured url"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _check_server(info: dict[str, Any]) -> str | None:
    """Why the server described by ``info`` (INFO) cannot be used; warn about risky settings."""
    if not info:
        return None
    release = str(info.get("redis_version", "0"))
    try:
        version = tuple(int(part) for part in release.split(".")[:2])
    except ValueError:
        version = (0, 0)
    if version < (6, 2):
        return f"version {release} is too old; 6.2 or newer is needed"
    if not info.get("aof_enabled"):
        log.warning(
            "Redis runs without appendonly: accepted events are lost if it restarts "
            "(set appendonly yes and appendfsync everysec or always)"
        )
    policy = info.get("maxmemory_policy")
    if policy and policy != "noeviction":
        log.warning(
            "Redis evicts keys under memory pressure (maxmemory-policy %s): stored events "
            "can vanish; use noeviction",
            policy,
        )
    return None


@contextlib.contextmanager
def _unavailable(what: str) -> Iterator[None]:
    """Turn a Redis or connection error into StoreUnavailable (senders get a 503)."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreUnavailable(f"Redis {what} failed: {exc}") from exc


class _Unusable(StoreUnavailable):
    """The server answers but cannot be used (too old): waiting will not mend it."""


class RedisStore(Store):
    """Events, deliveries and dead letters in Redis (``[store] backend = "redis"``)."""

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "eventrouter",
        dedupe_window: float = 3 * 86400,
        max_pending_writes: int = 5000,
        socket_timeout: float = 10.0,
        sentinels: Sequence[str] = (),
        service_name: str | None = None,
        operation_timeout: float = 3.0,
    ) -> None:
        self.url = url
        self.dedupe_window = float(dedupe_window)
        self.max_pending_writes = max_pending_writes
        self.socket_timeout = socket_timeout
        #: "host:port" of each Sentinel; empty: ``url`` is the server
        self.sentinels = tuple(sentinels)
        self.service_name = service_name
        #: how long connecting (and closing) may take before it counts as failed
        self.operation_timeout = float(operation_timeout)
        #: this store's consumer name in every sink's group: unique per process and instance
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._client: Redis | None = None
        self._sentinel: Sentinel | None = None
        self.keys = Keys(key_prefix)
        self._scripts: Scripts | None = None
        self._pending = 0
        #: the server has answered and passed the checks of :func:`_check_server`
        self._ready = False
        self._connect_lock = asyncio.Lock()
        self._next_connect = 0.0
        self._connect_error = ""
        self._watching = False

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def where(self) -> str:
        """The server (or Sentinel service) without credentials, for messages."""
        if self.sentinels:
            return f"Sentinel service {self.service_name!r} ({', '.join(self.sentinels)})"
        return _where(self.url)

    def _make_client(self) -> Redis:
        """A client of the server ``url`` names, or of the primary the Sentinels name."""
        options: dict[str, Any] = {
            "decode_responses": True,
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": min(5.0, self.socket_timeout),
            "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
            "health_check_interval": 30,
        }
        if not self.sentinels:
            return Redis.from_url(self.url, **options)
        if not self.service_name:
            raise ValueError("service_name is required with sentinels")
        # the url gives what the primary needs besides its address: database, credentials, TLS
        from_url = dict(parse_url(self.url))
        for name in ("host", "port", "path", "connection_class"):
            from_url.pop(name, None)
        self._sentinel = Sentinel(
            [_address(entry) for entry in self.sentinels],
            sentinel_kwargs={
                "socket_timeout": options["socket_timeout"],
                "socket_connect_timeout": options["socket_connect_timeout"],
            },
        )
        # master_for is not annotated: it returns an instance of ``redis_class``
        primary: Redis = self._sentinel.master_for(
            self.service_name,
            redis_class=Redis,
            ssl=urlsplit(self.url).scheme == "rediss",
            **{**options, **from_url},
        )
        return primary

    async def open(self, *, lazy: bool = False) -> None:
        try:
            client = self._make_client()
        except ValueError as exc:
            raise StoreUnavailable(f"invalid Redis url for {self.where}: {exc}") from None
        self._client = client
        # registered here, loaded by the server on first use (again after a restart of it)
        self._scripts = Scripts(client, self.keys)
        try:
            await self._connect(client)
        except _Unusable:
            await self.close()
            raise
        except StoreUnavailable as exc:
            if not lazy:
                await self.close()
                raise
            log.warning("%s; starting anyway: ingest and /readyz answer 503 until it answers", exc)

    async def _handshake(self, client: Redis) -> None:
        """Check the server answers and can be used; raise StoreUnavailable otherwise."""
        try:
            async with asyncio.timeout(self.operation_timeout):
                with _unavailable(f"connection to {self.where}"):
                    await client.ping()
                try:
                    info = await client.info()
                except (RedisError, OSError) as exc:  # e.g. an ACL without INFO: skip the checks
                    log.debug("cannot read INFO from Redis at %s: %s", self.where, exc)
                    info = {}
        except TimeoutError:
            raise StoreUnavailable(
                f"Redis at {self.where} did not answer within {self.operation_timeout:g}s"
            ) from None
        problem = _check_server(info)
        if problem:
            raise _Unusable(f"Redis at {self.where}: {problem}")

    async def _connect(self, client: Redis) -> None:
        """Make sure the server has answered once (it may have been down since the start)."""
        async with self._connect_lock:
            if self._ready:
                return
            if time.monotonic() < self._next_connect:
                raise StoreUnavailable(self._connect_error)
            try:
                await self._handshake(client)
                await self._check_layout(client)
            except StoreUnavailable as exc:
                # callers arriving within the next moment hear the same, without another try
                self._next_connect = time.monotonic() + RECONNECT_INTERVAL
                self._connect_error = str(exc)
                raise
            if self._connect_error:
                log.info("Redis at %s answers now", self.where)
            self._ready = True

    async def _check_layout(self, client: Redis) -> None:
        """Refuse keys written by a newer release; index the events of an older one (layout 0)."""
        with _unavailable(f"layout check at {self.where}"):
            stored = await client.get(self.keys.layout)
            if stored is None:
                if await client.exists(self.keys.events_log):
                    await self._index_existing(client)
                await client.set(self.keys.layout, LAYOUT_VERSION, nx=True)
                return
        raw = _text(stored)
        try:
            version = int(raw)
        except ValueError:
            version = LAYOUT_VERSION + 1
        if version > LAYOUT_VERSION:
            raise _Unusable(
                f"Redis at {self.where}: the keys under [store] key_prefix {self.keys.prefix!r} "
                f"have layout version {raw}, newer than this release knows ({LAYOUT_VERSION}): "
                "upgrade eventrouter (or use another key_prefix)"
            )

    async def _index_existing(self, client: Redis) -> None:
        """Add the events stored before the query indexes (layout 0) to them (idempotent)."""
        lower = "-"
        while True:
            page = _entries(await client.xrange(self.keys.events_log, min=lower, count=PAGE))
            async with client.pipeline(transaction=False) as pipe:
                for _, fields in page:
                    pipe.hget(self.keys.event(fields.get("event", "")), "body")
                bodies = await pipe.execute()
            async with client.pipeline(transaction=False) as pipe:
                for body in bodies:
                    if not body:
                        continue
                    event = Event.from_stored_json(body)
                    indexes = self._indexes(event)
                    received = event.received_at.timestamp()
                    for index in indexes:
                        pipe.zadd(index, {event.id: received})
                    pipe.hset(self.keys.event(event.id), "idx", json.dumps(indexes))
                await pipe.execute()
            if len(page) < PAGE:
                return
            lower = f"({page[-1][0]}"

    def _indexes(self, event: Event) -> list[str]:
        """The query indexes ``event`` belongs to."""
        key, phone, email, call_id, campaign_id = indexed_values(event)
        pairs = (
            ("all", ""),
            ("source", event.source),
            ("type", event.type),
            ("key", key),
            ("contact", phone),
            ("contact", email),
            ("call", call_id),
            ("campaign", campaign_id),
        )
        return [self.keys.index(kind, value) for kind, value in pairs if value is not None]

    async def _connected(self) -> Redis:
        """The client, once the server has answered; StoreUnavailable until then."""
        client = self._client
        if client is None:
            raise StoreUnavailable("the store is closed")
        if not self._ready:
            await self._connect(client)
        return client

    async def close(self) -> None:
        client, self._client = self._client, None
        scripts, self._scripts = self._scripts, None
        if client is None:
            return
        if self._ready and scripts is not None:
            try:
                async with asyncio.timeout(self.operation_timeout):
                    for sink in await _members(client, self.keys.sinks):
                        # forget this process's consumer if it holds nothing (a restart gets a
                        # new one)
                        await scripts.forget_consumers(sink, consumer=self.consumer, idle_ms=0)
            except (RedisError, OSError) as exc:  # TimeoutError is an OSError
                log.debug("could not remove consumer %s: %s", self.consumer, exc)
        self._ready = False
        await client.aclose()
        sentinel, self._sentinel = self._sentinel, None
        for node in sentinel.sentinels if sentinel is not None else ():
            await node.aclose()

    async def _ready_scripts(self) -> Scripts:
        """The scripts, once the server has answered; StoreUnavailable until then."""
        await self._connected()
        assert self._scripts is not None  # set with the client, which _connected checked
        return self._scripts

    @property
    def pending_writes(self) -> int:
        return self._pending

    async def ping(self) -> None:
        with _unavailable("ping"):
            await (await self._connected()).ping()

    async def watch(self, sinks: Sequence[str], wake: Callable[[str], None]) -> None:
        """Listen on the sinks' wake-up channels, calling ``wake(sink)`` for every message.

        After each (re)subscription every sink is woken, since what was published while
        nobody listened is lost; between attempts to subscribe the wait grows to a few seconds.
        """
        channels = {self.keys.wake(sink): sink for sink in sinks}
        if not channels:
            return
        delay = WATCH_RETRY[0]
        while True:
            pubsub = None
            try:
                pubsub = (await self._connected()).pubsub()
                await pubsub.subscribe(*channels)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    sink = channels.get(message.get("channel", "")) if message else None
                    if sink is None:
                        continue
                    if message and message["type"] == "subscribe":
                        # (re)subscribed, also after redis-py reconnected by itself
                        self._watching = True
                        delay = WATCH_RETRY[0]
                    wake(sink)
            except (RedisError, OSError, StoreUnavailable) as exc:
                log.debug("listening for queued work failed (%s); retrying in %.1fs", exc, delay)
            finally:
                self._watching = False
                if pubsub is not None:
                    with contextlib.suppress(RedisError, OSError):
                        async with asyncio.timeout(1.0):
                            await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, WATCH_RETRY[1])

    @property
    def watching(self) -> bool:
        return self._watching

    # -- ingest and delivery -------------------------------------------------------------

    async def ingest(self, event: Event, sinks: Sequence[str]) -> IngestResult:
        if self._pending >= self.max_pending_writes:
            raise Overloaded(f"{self._pending} writes are waiting for Redis")
        self._pending += 1
        try:
            with _unavailable("ingest"):
                scripts = await self._ready_scripts()
                accepted, event_id = await scripts.ingest(
                    event,
                    list(dict.fromkeys(sinks)),
                    window=self.dedupe_window,
                    now=time.time(),
                    indexes=self._indexes(event),
                )
        finally:
            self._pending -= 1
        return IngestResult(accepted=accepted, event_id=event_id)

    async def claim(self, sink: str, *, limit: int, lease: float) -> list[Delivery]:
        if limit <= 0:
            return []
        with _unavailable("claim"):
            scripts = await self._ready_scripts()
            claimed = await scripts.claim(
                sink,
                consumer=self.consumer,
                limit=limit,
                lease=lease,
                now=time.time(),
                error=LOST_WORKER,
            )
        deliveries, refused = await claimed_deliveries(
            claimed,
            lambda row: Delivery(
                event=Event.from_stored_json(row.body),
                sink=sink,
                attempts=row.attempts,
                token=row.token,
                lost=row.lost,
                trigger=Trigger(row.trigger),
            ),
        )
        if refused:
            # dead-lettered without an attempt (see claimed_deliveries)
            now = time.time()
            ends = []
            for row, error in refused:
                log.error("sink %s: event %s dead-lettered: %s", sink, row.event_id, error)
                ends.append(
                    EndClaim(
                        sink=sink,
                        event_id=row.event_id,
                        token=row.token,
                        outcome="dead",
                        attempts=row.attempts,
                        now=now,
                        due=now,
                        error=error,
                        attempt="",
                    )
                )
            with _unavailable("delivery outcome update"):
                await scripts.end_claims(ends)
        return deliveries

    async def next_due(self, sink: str) -> datetime | None:
        with _unavailable("next_due"):
            delay = await (await self._ready_scripts()).next_due(sink)
        if delay is None:
            return None
        return datetime.now(UTC) + timedelta(seconds=delay)

    async def settle(self, settlements: Sequence[Settlement]) -> None:
        """Record the outcomes of claims (each ignored if its claim is no longer current) and
        their attempts: one script each, sent together in one round trip."""
        if not settlements:
            return
        now = time.time()
        ends = []
        for settled in settlements:
            delivery, state = settled.delivery, settled.state
            if state is DeliveryState.PENDING and settled.at is None:
                raise ValueError("a pending settlement needs the time it is due again (at)")
            outcome: Outcome = (
                "done"
                if state is DeliveryState.DONE
                else "dead"
                if state is DeliveryState.DEAD
                else "pending"
            )
            due = settled.at.timestamp() if state is DeliveryState.PENDING and settled.at else now
            ends.append(
                EndClaim(
                    sink=delivery.sink,
                    event_id=delivery.event.id,
                    token=delivery.token,
                    outcome=outcome,
                    attempts=delivery.attempts + (1 if settled.counted else 0),
                    now=now,
                    due=due,
                    error="" if state is DeliveryState.DONE else settled.error or "",
                    attempt="" if settled.attempt is None else _attempt_json(settled.attempt),
                )
            )
        with _unavailable("delivery outcome update"):
            scripts = await self._ready_scripts()
            if len(ends) == 1:
                await scripts.end_claim(ends[0])
            else:
                await scripts.end_claims(ends)

    # -- listings and operations ---------------------------------------------------------

    @staticmethod
    def _stored(fields: dict[str, str]) -> StoredEvent | None:
        body = fields.get("body")
        if body is None:
            return None
        records = []
        for name, raw in sorted(fields.items()):
            if not name.startswith("sink:"):
                continue
            rec = _json_record(raw)
            state = DeliveryState(rec["state"])
            records.append(
                DeliveryRecord(
                    sink=name[5:],
                    state=state,
                    attempts=int(rec.get("attempts", 0)),
                    next_attempt_at=(
                        _ts(rec.get("due"))
                        if state in (DeliveryState.PENDING, DeliveryState.INFLIGHT)
                        else None
                    ),
                    last_error=rec.get("error") or None,
                    updated_at=_ts(rec.get("updated")),
                )
            )
        return StoredEvent(event=Event.from_stored_json(body), deliveries=tuple(records))

    async def get_event(self, event_id: str) -> StoredEvent | None:
        with _unavailable("read"):
            fields = await (await self._connected()).hgetall(self.keys.event(event_id))
        return self._stored(_fields(fields))

    async def list_events(
        self, *, limit: int = 50, source: str | None = None, type: str | None = None
    ) -> list[StoredEvent]:
        if limit <= 0:
            return []
        client = await self._connected()
        found: list[StoredEvent] = []
        # unfiltered, the newest ``limit`` entries are the answer; filtered, read further
        count = PAGE if source or type else min(PAGE, limit)
        upper = "+"
        with _unavailable("read"):
            while len(found) < limit:
                page = _entries(
                    await client.xrevrange(self.keys.events_log, max=upper, min="-", count=count)
                )
                upper = f"({page[-1][0]}" if page else upper
                wanted = [
                    fields["event"]
                    for _, fields in page
                    if fields.get("event")
                    and (not source or fields.get("source") == source)
                    and (not type or fnmatch.fnmatchcase(fields.get("type", ""), type))
                ]
                if wanted:
                    async with client.pipeline(transaction=False) as pipe:
                        for eid in wanted:
                            pipe.hgetall(self.keys.event(eid))
                        hashes = await pipe.execute()
                    stored = (self._stored(_fields(fields)) for fields in hashes)
                    found.extend(s for s in stored if s is not None)
                if len(page) < count:
                    break
        return found[:limit]

    async def _sink_names(self, sink: str | None) -> list[str]:
        if sink is not None:
            return [sink]
        return await _members(await self._connected(), self.keys.sinks)

    async def list_dead_letters(
        self, *, sink: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        if limit <= 0:
            return []
        letters: list[tuple[float, tuple[int, int], DeadLetter]] = []
        with _unavailable("read"):
            for name in await self._sink_names(sink):
                client = await self._connected()
                page = await client.xrevrange(self.keys.dead(name), count=limit)
                for entry_id, fields in _entries(page):
                    dead_at = float(fields.get("dead_at", 0))
                    letter = DeadLetter(
                        event_id=fields.get("event", ""),
                        source=fields.get("source", ""),
                        type=fields.get("type", ""),
                        sink=name,
                        attempts=int(fields.get("attempts", 0)),
                        reason=fields.get("reason", ""),
                        dead_at=datetime.fromtimestamp(dead_at, UTC),
                    )
                    letters.append((dead_at, _entry_order(entry_id), letter))
        letters.sort(key=lambda item: (item[0], item[1]), reverse=True)
        return [letter for _, _, letter in letters[:limit]]

    async def retry_dead_letters(
        self, *, sink: str | None = None, event_ids: Sequence[str] = (), action: str | None = None
    ) -> int:
        client = await self._connected()
        targets: list[tuple[str, str, str]] = []  # (event id, sink, dead entry id or "")
        with _unavailable("read"):
            if event_ids:
                for eid in dict.fromkeys(event_ids):
                    stored = self._stored(_fields(await client.hgetall(self.keys.event(eid))))
                    if stored is None:
                        continue
                    targets.extend(
                        (eid, record.sink, "")
                        for record in stored.deliveries
                        if record.state == DeliveryState.DEAD and sink in (None, record.sink)
                    )
            else:
                for name in await self._sink_names(sink):
                    lower = "-"
                    while True:
                        page = _entries(
                            await client.xrange(self.keys.dead(name), min=lower, count=PAGE)
                        )
                        targets.extend(
                            (fields.get("event", ""), name, entry_id) for entry_id, fields in page
                        )
                        if len(page) < PAGE:
                            break
                        lower = f"({page[-1][0]}"
        revived = 0
        now = time.time()
        with _unavailable("dead letter retry"):
            scripts = await self._ready_scripts()
            for eid, name, entry_id in targets:
                revived += await scripts.revive(
                    eid, name, listed_entry=entry_id, now=now, action=action or ""
                )
        return revived

    async def replay(
        self, event_id: str, sinks: Sequence[str], *, action: str | None = None
    ) -> int:
        with _unavailable("replay"):
            scripts = await self._ready_scripts()
            return await scripts.replay(
                event_id, list(dict.fromkeys(sinks)), now=time.time(), action=action or ""
            )

    async def queue_depth(self) -> dict[str, dict[str, int]]:
        with _unavailable("read"):
            rows = await (await self._ready_scripts()).queue_depth()
        depth: dict[str, dict[str, int]] = {}
        for sink, pending, inflight, dead in rows:
            counts = {"pending": pending, "inflight": inflight, "dead": dead}
            counts = {state: n for state, n in counts.items() if n}
            if counts:
                depth[sink] = counts
        return depth

    async def purge(self, *, retention: float) -> int:
        """Forget delivered events older than ``retention`` seconds and consumers of dead
        processes (idempotency keys expire by themselves)."""
        client = await self._connected()
        scripts = await self._ready_scripts()
        cutoff = time.time() - retention
        removed = 0
        with _unavailable("purge"):
            lower = "-"
            while True:
                page = _entries(await client.xrange(self.keys.events_log, min=lower, count=PAGE))
                old = [
                    (fields.get("event", ""), entry_id)
                    for entry_id, fields in page
                    if float(fields.get("received", 0)) < cutoff
                ]
                if old:
                    removed += await scripts.purge(old, cutoff=cutoff)
                if len(page) < PAGE or len(old) < len(page):
                    break
                lower = f"({page[-1][0]}"
            for sink in await _members(client, self.keys.sinks):
                await scripts.forget_consumers(
                    sink, consumer=self.consumer, idle_ms=STALE_CONSUMER_MS
                )
        return removed

    # -- sink control (see eventrouter.circuit; scripts in store/lua/) ----------------------

    async def get_control(self, sink: str) -> SinkControl:
        with _unavailable("read"):
            version, data = await (await self._connected()).hmget(
                self.keys.control(sink), ["version", "data"]
            )
        if not data:
            return SinkControl()
        return SinkControl.from_json(str(data), version=int(version or 0))

    async def put_control(self, sink: str, control: SinkControl) -> bool:
        with _unavailable("sink control update"):
            scripts = await self._ready_scripts()
            return await scripts.control_put(sink, version=control.version, data=control.to_json())

    async def rate_permit(self, sink: str, *, interval: float) -> float:
        with _unavailable("rate limit"):
            return await (await self._ready_scripts()).rate_permit(sink, interval=interval)

    # -- queries, attempt history, heartbeats ---------------------------------------------

    backend_name = "redis"
    #: free text over the raw payload would read every event: not offered (the README says so)
    supported_filters = frozenset(FILTER_NAMES) - {"text"}

    def _driver(self, where: EventFilter) -> str:
        """The index a query walks: its most selective filter's (the others are checked on the
        events read)."""
        k = self.keys
        exact = (
            ("key", where.idempotency_key),
            ("call", where.call_id),
            ("contact", where.contact),
            ("campaign", where.campaign_id),
            ("source", where.source),
        )
        for kind, value in exact:
            if value is not None:
                return k.index(kind, value)
        if where.type is not None and not any(ch in where.type for ch in "*?["):
            return k.index("type", where.type)
        return k.index("all", "")

    async def _walk(self, where: EventFilter, after: Cursor | None) -> AsyncIterator[StoredEvent]:
        """The events matching ``where`` strictly older than ``after``, newest first."""
        client = await self._connected()
        index = self._driver(where)
        last = after
        if after is not None:
            high = number(after.received_at)
        elif where.until is not None:
            high = f"({number(where.until.timestamp())}"
        else:
            high = "+inf"
        low = number(where.since.timestamp()) if where.since is not None else "-inf"
        while True:
            with _unavailable("read"):
                reply = await client.zrange(
                    index, high, low, desc=True, byscore=True, offset=0, num=PAGE, withscores=True
                )
            # the client's annotations cover every reply shape: this one is (member, score) pairs
            pairs = cast("list[tuple[bytes | str, float]]", reply)
            rows = [(_text(eid), float(score)) for eid, score in pairs]
            fresh = [
                (eid, score)
                for eid, score in rows
                if last is None
                or score < last.received_at
                or (score == last.received_at and eid < last.event_id)
            ]
            if fresh:
                with _unavailable("read"):
                    async with client.pipeline(transaction=False) as pipe:
                        for eid, _ in fresh:
                            pipe.hgetall(self.keys.event(eid))
                        hashes = await pipe.execute()
                for fields in hashes:
                    stored = self._stored(_fields(fields))
                    if stored is not None and where.matches(stored):
                        yield stored
                eid, score = fresh[-1]
                last = Cursor(score, eid)
                high = number(score)
            elif rows:  # a page of ties at the cursor's time, all seen: step below that time
                high = f"({number(rows[-1][1])}"
            if len(rows) < PAGE:
                return

    async def find_events(
        self, where: EventFilter, *, limit: int, after: Cursor | None = None
    ) -> list[StoredEvent]:
        found: list[StoredEvent] = []
        if limit <= 0:
            return found
        async for stored in self._walk(where, after):
            found.append(stored)
            if len(found) >= limit:
                break
        return found

    async def find_deliveries(
        self, where: EventFilter, *, limit: int, after: Cursor | None = None
    ) -> list[tuple[Cursor, str]]:
        return [
            (Cursor(stored.event.received_at.timestamp(), stored.event.id), record.sink)
            for stored in await self.find_events(where, limit=limit, after=after)
            for record in stored.deliveries
            if where.state in (None, record.state) and where.sink in (None, record.sink)
        ]

    async def count_deliveries(self, where: EventFilter) -> dict[str, int]:
        counts: dict[str, int] = {}
        async for stored in self._walk(where, None):
            for record in stored.deliveries:
                if where.state in (None, record.state) and where.sink in (None, record.sink):
                    counts[record.sink] = counts.get(record.sink, 0) + 1
        return counts

    async def list_attempts(self, event_id: str) -> list[Attempt]:
        with _unavailable("read"):
            raw = await (await self._connected()).lrange(self.keys.attempts(event_id), 0, -1)
        return [_attempt_from_json(_text(item)) for item in raw]

    async def heartbeat(self, worker: str, *, ttl: float) -> None:
        now = time.time()
        with _unavailable("heartbeat"):
            client = await self._connected()
            async with client.pipeline(transaction=True) as pipe:
                pipe.zadd(self.keys.heartbeats, {worker: now + ttl})
                pipe.hset(self.keys.heartbeats_seen, worker, number(now))
                pipe.zremrangebyscore(self.keys.heartbeats, "-inf", f"({number(now)}")
                await pipe.execute()

    async def last_heartbeat(self) -> datetime | None:
        with _unavailable("read"):
            client = await self._connected()
            reply = await client.zrangebyscore(self.keys.heartbeats, number(time.time()), "+inf")
            alive = [_text(worker) for worker in cast("list[bytes | str]", reply)]
            if not alive:
                return None
            seen = await client.hmget(self.keys.heartbeats_seen, alive)
        times = [float(value) for value in seen if value]
        return _ts(max(times)) if times else None


def _attempt_json(attempt: Attempt) -> str:
    """An attempt as the history list keeps it."""
    return json.dumps(attempt.to_dict())


def _attempt_from_json(raw: str) -> Attempt:
    """Read back :func:`_attempt_json`, or the lost attempt ``claim.lua`` writes (which gives
    its end, ``ended_at``, instead of a duration)."""
    value = _json_record(raw)
    when = str(value.get("started_at") or 0)
    try:  # claim.lua writes the Redis record's time (seconds), Attempt.to_dict ISO 8601
        started = float(when)
    except ValueError:
        started = datetime.fromisoformat(when).timestamp()
    duration = value.get("duration")
    if duration is None:
        duration = max(0.0, float(value.get("ended_at") or started) - started)
    status = value.get("status")
    return Attempt(
        sink=str(value.get("sink", "")),
        number=int(value.get("number", 0)),
        started_at=datetime.fromtimestamp(started, UTC),
        duration=float(duration),
        outcome=AttemptOutcome(value.get("outcome", "lost")),
        trigger=Trigger(value.get("trigger", "first")),
        status=int(status) if isinstance(status, int | float) else None,
        error=value.get("error") or None,
        response_excerpt=value.get("response_excerpt") or None,
    )


def _json_record(raw: str) -> dict[str, Any]:
    value = json.loads(raw)
    return value if isinstance(value, dict) else {}
