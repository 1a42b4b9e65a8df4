"""The distributed store: Redis Streams, so several eventrouter processes share one queue.

Layout (every key starts with ``[store] key_prefix``, ``P`` below):

- ``P:event:ID`` a hash: the event JSON (``body``), ``source``, ``type``, ``received`` and one
  ``sink:NAME`` field per delivery holding its record (state, attempts, due, error, entry ids);
- ``P:events`` a stream logging every stored event (listings, newest first, and purging);
- ``P:dedupe:SHA`` the idempotency key of source + ``idempotency_key``, set only if absent and
  with a TTL of ``dedupe_window`` (``PX``), so Redis forgets it by itself;
- ``P:queue:SINK`` a stream per sink with one entry per delivery to make, read through the
  consumer group ``workers`` (each store instance is one consumer): ``XREADGROUP`` hands an
  entry to one worker only, and ``XAUTOCLAIM`` with min-idle = lease lets another worker take
  it over once it has been idle that long (its worker died); ack, retry and dead-letter
  ``XACK`` and ``XDEL`` it, so the stream holds only deliveries still to make;
- ``P:retry:SINK`` a sorted set of deliveries waiting for a retry, scored by due time; a claim
  moves the due ones back into the stream, ``next_due`` reads the lowest score (no busy polling);
- ``P:lease:SINK`` a sorted set of claimed deliveries scored by lease end (for ``next_due``);
- ``P:dead:SINK`` a stream of dead letters;
- ``P:sinks`` the set of sinks that have a queue.

Every operation that changes state is one Lua script, so it is atomic (ingest: dedupe key,
event hash and one ``XADD`` per sink). A lease is measured by the worker taking it over (its
own lease is the min-idle), which is the same for every process running one configuration.
Scheduling uses the Redis server's clock, so processes whose clocks disagree a little still
agree on what is due; times shown in listings are the processes' own.

Durability: ingest returns once Redis has executed the write, so what survives a crash depends
on Redis persistence. Run Redis with ``appendonly yes`` and ``appendfsync everysec`` (up to a
second of acknowledged events lost if the host crashes) or ``always`` (none lost), and with
``maxmemory-policy noeviction``; :meth:`RedisStore.open` warns otherwise. The scripts touch
keys they compute, so this needs one Redis server (or primary), not Redis Cluster.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from eventrouter.errors import Overloaded, StoreUnavailable
from eventrouter.events import Event
from eventrouter.store.base import (
    DeadLetter,
    Delivery,
    DeliveryRecord,
    DeliveryState,
    IngestResult,
    Store,
    StoredEvent,
)

__all__ = ["RedisStore"]

log = logging.getLogger("eventrouter.store")

#: the consumer group of every sink's queue stream
GROUP = "workers"
#: a consumer with nothing pending that has been idle this long (ms) belonged to a dead process
STALE_CONSUMER_MS = 3600 * 1000
#: how many entries listings and purges read per round trip
PAGE = 200

# Shared Lua helpers: a delivery record is JSON in the event hash's ``sink:NAME`` field; times
# in it are kept as strings so they round-trip exactly.
_LUA_HELPERS = """
local function load(key, sink)
  local raw = redis.call('HGET', key, 'sink:' .. sink)
  if not raw then return nil end
  return cjson.decode(raw)
end
local function save(key, sink, rec)
  redis.call('HSET', key, 'sink:' .. sink, cjson.encode(rec))
end
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function score(value)
  return string.format('%.6f', value)
end
local function ensure_queue(stream, group)
  if redis.call('EXISTS', stream) == 0 then
    redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
  end
end
"""

# KEYS: dedupe, event hash, events log, sinks set, queue stream per sink
# ARGV: event id, window ms, body, source, type, received, now, group, sink names...
_INGEST = """
local seen = redis.call('GET', KEYS[1])
if seen then
  if seen == ARGV[1] then return {1, seen} end
  return {0, seen}
end
local eid, now = ARGV[1], ARGV[7]
local logid = redis.call('XADD', KEYS[3], '*', 'event', eid, 'source', ARGV[4], 'type', ARGV[5],
  'received', ARGV[6])
redis.call('HSET', KEYS[2], 'body', ARGV[3], 'source', ARGV[4], 'type', ARGV[5],
  'received', ARGV[6], 'log', logid)
for i = 9, #ARGV do
  local sink, stream = ARGV[i], KEYS[i - 4]
  redis.call('SADD', KEYS[4], sink)
  ensure_queue(stream, ARGV[8])
  local entry = redis.call('XADD', stream, '*', 'event', eid)
  save(KEYS[2], sink, {state = 'pending', attempts = 0, due = now, updated = now, entry = entry})
end
redis.call('SET', KEYS[1], eid, 'PX', ARGV[2])
return {1, eid}
"""

# KEYS: queue stream, retry zset, lease zset, sinks set
# ARGV: sink, group, consumer, now, lease seconds, limit, event key prefix, lease end (shown)
_CLAIM = """
local sink, group, consumer = ARGV[1], ARGV[2], ARGV[3]
if redis.call('SISMEMBER', KEYS[4], sink) == 0 then return {} end
local lease, limit, prefix = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local server_now = clock()
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', score(server_now), 'LIMIT', 0, 1000)
for _, eid in ipairs(due) do
  local rec = load(prefix .. eid, sink)
  if rec and rec.state == 'pending' and not rec.entry then
    rec.entry = redis.call('XADD', KEYS[1], '*', 'event', eid)
    save(prefix .. eid, sink, rec)
  end
  redis.call('ZREM', KEYS[2], eid)
end
local out, seen = {}, 0
local function take(id, fields)
  seen = seen + 1
  local eid = fields and fields[2]
  local rec, body
  if eid then
    rec = load(prefix .. eid, sink)
    body = redis.call('HGET', prefix .. eid, 'body')
  end
  if not rec or rec.entry ~= id or not body then
    redis.call('XACK', KEYS[1], group, id)
    redis.call('XDEL', KEYS[1], id)
    return
  end
  rec.state = 'inflight'
  rec.due = ARGV[8]
  rec.updated = ARGV[4]
  save(prefix .. eid, sink, rec)
  redis.call('ZADD', KEYS[3], score(server_now + lease), eid)
  out[#out + 1] = {eid, rec.attempts, id, body}
end
-- take over entries idle longer than the lease (their worker died); each XAUTOCLAIM looks at
-- up to ten times COUNT pending entries, so follow its cursor through the whole list
local idle = math.max(0, math.floor(lease * 1000))
local cursor = '0-0'
repeat
  local reclaimed = redis.call('XAUTOCLAIM', KEYS[1], group, consumer, idle, cursor,
    'COUNT', limit - seen)
  for _, entry in ipairs(reclaimed[2]) do take(entry[1], entry[2]) end
  cursor = reclaimed[1]
until cursor == '0-0' or seen >= limit
if limit - seen > 0 then
  local read = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', limit - seen,
    'STREAMS', KEYS[1], '>')
  if read then
    for _, entry in ipairs(read[1][2]) do take(entry[1], entry[2]) end
  end
end
return out
"""

# KEYS: queue stream, lease zset, event hash, retry zset, dead stream
# ARGV: sink, group, token, new state, attempts, now, due (shown), delay seconds, error, event id
_SETTLE = """
local sink, group, token, state = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local rec = load(KEYS[3], sink)
if not rec or rec.state ~= 'inflight' or rec.entry ~= token then return 0 end
redis.call('XACK', KEYS[1], group, token)
redis.call('XDEL', KEYS[1], token)
redis.call('ZREM', KEYS[2], ARGV[10])
rec.entry = nil
rec.state = state
rec.attempts = tonumber(ARGV[5])
rec.updated = ARGV[6]
if state == 'done' then
  rec.due = nil
  rec.error = nil
elseif state == 'pending' then
  rec.due = ARGV[7]
  rec.error = ARGV[9]
  redis.call('ZADD', KEYS[4], score(clock() + tonumber(ARGV[8])), ARGV[10])
else
  local meta = redis.call('HMGET', KEYS[3], 'source', 'type')
  rec.due = nil
  rec.error = ARGV[9]
  rec.dead = redis.call('XADD', KEYS[5], '*', 'event', ARGV[10], 'source', meta[1] or '',
    'type', meta[2] or '', 'attempts', ARGV[5], 'reason', ARGV[9], 'dead_at', ARGV[6])
end
save(KEYS[3], sink, rec)
return 1
"""

# KEYS: event hash, queue stream, dead stream, sinks set
# ARGV: sink, group, now, dead entry id seen in a listing (or ''), event id
_REVIVE = """
local sink = ARGV[1]
if ARGV[4] ~= '' then redis.call('XDEL', KEYS[3], ARGV[4]) end
local rec = load(KEYS[1], sink)
if not rec or rec.state ~= 'dead' then return 0 end
if rec.dead then redis.call('XDEL', KEYS[3], rec.dead) end
redis.call('SADD', KEYS[4], sink)
ensure_queue(KEYS[2], ARGV[2])
rec.dead = nil
rec.state = 'pending'
rec.attempts = 0
rec.due = ARGV[3]
rec.updated = ARGV[3]
rec.entry = redis.call('XADD', KEYS[2], '*', 'event', ARGV[5])
save(KEYS[1], sink, rec)
return 1
"""

# KEYS: event hash, sinks set, then per sink: queue stream, retry zset, lease zset, dead stream
# ARGV: event id, group, now, sink names...
_REPLAY = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local eid, group, now = ARGV[1], ARGV[2], ARGV[3]
for i = 4, #ARGV do
  local sink, base = ARGV[i], 2 + (i - 4) * 4
  local stream, retry, lease, dead = KEYS[base + 1], KEYS[base + 2], KEYS[base + 3], KEYS[base + 4]
  local rec = load(KEYS[1], sink)
  if rec then
    if rec.entry then
      redis.call('XACK', stream, group, rec.entry)
      redis.call('XDEL', stream, rec.entry)
    end
    if rec.dead then redis.call('XDEL', dead, rec.dead) end
    redis.call('ZREM', retry, eid)
    redis.call('ZREM', lease, eid)
  end
  redis.call('SADD', KEYS[2], sink)
  ensure_queue(stream, group)
  local entry = redis.call('XADD', stream, '*', 'event', eid)
  save(KEYS[1], sink, {state = 'pending', attempts = 0, due = now, updated = now, entry = entry})
end
return #ARGV - 3
"""

# KEYS: queue stream, retry zset, lease zset; ARGV: group
# Returns the seconds until the next delivery is due by the server's clock (<= 0: due now).
_NEXT_DUE = """
local server_now = clock()
local best = nil
if redis.call('EXISTS', KEYS[1]) == 1 then
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1])[1]
  if redis.call('XLEN', KEYS[1]) > pending then best = 0 end
end
for i = 2, 3 do
  local first = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
  if first[2] then
    local delay = tonumber(first[2]) - server_now
    if best == nil or delay < best then best = delay end
  end
end
if best == nil then return false end
return score(best)
"""

# KEYS: sinks set; ARGV: group, key prefix. Returns {sink, pending, inflight, dead, ...}.
_DEPTH = """
local out = {}
for _, sink in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local stream = ARGV[2] .. ':queue:' .. sink
  local length, inflight = 0, 0
  if redis.call('EXISTS', stream) == 1 then
    length = redis.call('XLEN', stream)
    inflight = redis.call('XPENDING', stream, ARGV[1])[1]
  end
  local waiting = redis.call('ZCARD', ARGV[2] .. ':retry:' .. sink)
  local dead = redis.call('XLEN', ARGV[2] .. ':dead:' .. sink)
  out[#out + 1] = {sink, length - inflight + waiting, inflight, dead}
end
return out
"""

# KEYS: events log; ARGV: cutoff, event key prefix, then pairs of event id and log entry id.
_PURGE = """
local removed = 0
local cutoff = tonumber(ARGV[1])
for i = 3, #ARGV, 2 do
  local key, logid = ARGV[2] .. ARGV[i], ARGV[i + 1]
  local fields = redis.call('HGETALL', key)
  if #fields == 0 then
    redis.call('XDEL', KEYS[1], logid)
  else
    local keep, received = false, nil
    for j = 1, #fields, 2 do
      local name = fields[j]
      if name == 'received' then
        received = tonumber(fields[j + 1])
      elseif string.sub(name, 1, 5) == 'sink:' and cjson.decode(fields[j + 1]).state ~= 'done' then
        keep = true
      end
    end
    if not keep and received and received < cutoff then
      redis.call('DEL', key)
      redis.call('XDEL', KEYS[1], logid)
      removed = removed + 1
    end
  end
end
return removed
"""

# KEYS: queue stream; ARGV: group, consumer, idle ms. With idle ms '0', removes that consumer;
# otherwise every other consumer idle that long. Only consumers that own no pending entry are
# removed: deleting one with pending entries would lose them.
_FORGET_CONSUMERS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local removed = 0
for _, info in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local fields = {}
  for j = 1, #info, 2 do fields[info[j]] = info[j + 1] end
  local remove
  if ARGV[3] == '0' then
    remove = fields['name'] == ARGV[2]
  else
    remove = fields['name'] ~= ARGV[2] and tonumber(fields['idle']) >= tonumber(ARGV[3])
  end
  if remove and fields['pending'] == 0 then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], fields['name'])
    removed = removed + 1
  end
end
return removed
"""


def _ts(value: str | float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(float(value), UTC)


def _num(value: float) -> str:
    """A float as a string that reads back as the same float."""
    return repr(float(value))


def _entry_order(entry_id: str) -> tuple[int, int]:
    millis, _, seq = entry_id.partition("-")
    return int(millis), int(seq or 0)


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
        return f"version {release} is too old; 6.2 or newer is needed (XAUTOCLAIM)"
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
    ) -> None:
        self.url = url
        self.prefix = key_prefix
        self.dedupe_window = float(dedupe_window)
        self.max_pending_writes = max_pending_writes
        self.socket_timeout = socket_timeout
        #: this store's consumer name in every sink's group: unique per process and instance
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._client: Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._pending = 0

    # -- keys --------------------------------------------------------------------------------

    def _event_key(self, event_id: str) -> str:
        return f"{self.prefix}:event:{event_id}"

    def _queue(self, sink: str) -> str:
        return f"{self.prefix}:queue:{sink}"

    def _retry(self, sink: str) -> str:
        return f"{self.prefix}:retry:{sink}"

    def _lease(self, sink: str) -> str:
        return f"{self.prefix}:lease:{sink}"

    def _dead(self, sink: str) -> str:
        return f"{self.prefix}:dead:{sink}"

    @property
    def _log(self) -> str:
        return f"{self.prefix}:events"

    @property
    def _sinks(self) -> str:
        return f"{self.prefix}:sinks"

    def _dedupe_key(self, event: Event) -> str:
        digest = hashlib.sha256(f"{event.source}\x1f{event.idempotency_key}".encode()).hexdigest()
        return f"{self.prefix}:dedupe:{digest}"

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        where = _where(self.url)
        try:
            client = Redis.from_url(
                self.url,
                decode_responses=True,
                socket_timeout=self.socket_timeout,
                socket_connect_timeout=5,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
                health_check_interval=30,
            )
        except ValueError as exc:
            raise StoreUnavailable(f"invalid Redis url for {where}: {exc}") from None
        try:
            with _unavailable(f"connection to {where}"):
                await client.ping()
        except StoreUnavailable:
            await client.aclose()
            raise
        try:
            info = await client.info()
        except (RedisError, OSError) as exc:  # e.g. an ACL without INFO: skip the checks
            log.debug("cannot read INFO from Redis at %s: %s", where, exc)
            info = {}
        problem = _check_server(info)
        if problem:
            await client.aclose()
            raise StoreUnavailable(f"Redis at {where}: {problem}")
        self._client = client
        sources = {
            "ingest": _INGEST,
            "claim": _CLAIM,
            "settle": _SETTLE,
            "revive": _REVIVE,
            "replay": _REPLAY,
            "next_due": _NEXT_DUE,
            "depth": _DEPTH,
            "purge": _PURGE,
            "forget_consumers": _FORGET_CONSUMERS,
        }
        self._scripts = {
            name: client.register_script(_LUA_HELPERS + body) for name, body in sources.items()
        }

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            for sink in await client.smembers(self._sinks):
                # forget this process's consumer if it holds nothing (a restart gets a new one)
                await self._scripts["forget_consumers"](
                    keys=[self._queue(sink)], args=[GROUP, self.consumer, 0], client=client
                )
        except (RedisError, OSError) as exc:
            log.debug("could not remove consumer %s: %s", self.consumer, exc)
        await client.aclose()

    @property
    def _redis(self) -> Redis:
        if self._client is None:
            raise StoreUnavailable("the store is closed")
        return self._client

    async def _run(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        client = self._redis
        return await self._scripts[script](keys=list(keys), args=list(args), client=client)

    @property
    def pending_writes(self) -> int:
        return self._pending

    async def ping(self) -> None:
        with _unavailable("ping"):
            await self._redis.ping()

    # -- ingest and delivery -------------------------------------------------------------

    async def ingest(self, event: Event, sinks: Sequence[str]) -> IngestResult:
        if self._pending >= self.max_pending_writes:
            raise Overloaded(f"{self._pending} writes are waiting for Redis")
        names = list(dict.fromkeys(sinks))
        now = _num(time.time())
        keys = [
            self._dedupe_key(event),
            self._event_key(event.id),
            self._log,
            self._sinks,
            *(self._queue(s) for s in names),
        ]
        args = [
            event.id,
            max(1, round(self.dedupe_window * 1000)),
            event.to_json(),
            event.source,
            event.type,
            _num(event.received_at.timestamp()),
            now,
            GROUP,
            *names,
        ]
        self._pending += 1
        try:
            with _unavailable("ingest"):
                accepted, event_id = await self._run("ingest", keys, args)
        finally:
            self._pending -= 1
        return IngestResult(accepted=bool(accepted), event_id=event_id)

    async def claim(self, sink: str, *, limit: int, lease: float) -> list[Delivery]:
        if limit <= 0:
            return []
        now = time.time()
        keys = [self._queue(sink), self._retry(sink), self._lease(sink), self._sinks]
        args = [
            sink,
            GROUP,
            self.consumer,
            _num(now),
            _num(lease),
            limit,
            f"{self.prefix}:event:",
            _num(now + lease),
        ]
        with _unavailable("claim"):
            rows = await self._run("claim", keys, args)
        return [
            Delivery(event=Event.from_json(body), sink=sink, attempts=int(attempts), token=entry)
            for _, attempts, entry, body in rows
        ]

    async def next_due(self, sink: str) -> datetime | None:
        keys = [self._queue(sink), self._retry(sink), self._lease(sink)]
        with _unavailable("next_due"):
            delay = await self._run("next_due", keys, [GROUP])
        if delay is None:
            return None
        return datetime.now(UTC) + timedelta(seconds=float(delay))

    async def _settle(
        self,
        delivery: Delivery,
        state: DeliveryState,
        *,
        at: datetime | None = None,
        error: str = "",
    ) -> None:
        sink = delivery.sink
        now = time.time()
        due = at.timestamp() if at is not None else now
        keys = [
            self._queue(sink),
            self._lease(sink),
            self._event_key(delivery.event.id),
            self._retry(sink),
            self._dead(sink),
        ]
        args = [
            sink,
            GROUP,
            delivery.token,
            state.value,
            delivery.attempts + 1,
            _num(now),
            _num(due),
            _num(due - now),
            error,
            delivery.event.id,
        ]
        with _unavailable(f"{state.value} update"):
            await self._run("settle", keys, args)

    async def ack(self, delivery: Delivery) -> None:
        await self._settle(delivery, DeliveryState.DONE)

    async def retry_later(self, delivery: Delivery, *, at: datetime, error: str) -> None:
        await self._settle(delivery, DeliveryState.PENDING, at=at, error=error)

    async def dead_letter(self, delivery: Delivery, *, error: str) -> None:
        await self._settle(delivery, DeliveryState.DEAD, error=error)

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
                )
            )
        return StoredEvent(event=Event.from_json(body), deliveries=tuple(records))

    async def get_event(self, event_id: str) -> StoredEvent | None:
        with _unavailable("read"):
            fields = await self._redis.hgetall(self._event_key(event_id))
        return self._stored(fields)

    async def list_events(
        self, *, limit: int = 50, source: str | None = None, type: str | None = None
    ) -> list[StoredEvent]:
        if limit <= 0:
            return []
        client = self._redis
        found: list[StoredEvent] = []
        # unfiltered, the newest ``limit`` entries are the answer; filtered, read further
        count = PAGE if source or type else min(PAGE, limit)
        upper = "+"
        with _unavailable("read"):
            while len(found) < limit:
                page = await client.xrevrange(self._log, max=upper, min="-", count=count)
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
                            pipe.hgetall(self._event_key(eid))
                        hashes = await pipe.execute()
                    found.extend(s for s in map(self._stored, hashes) if s is not None)
                if len(page) < count:
                    break
        return found[:limit]

    async def _sink_names(self, sink: str | None) -> list[str]:
        if sink is not None:
            return [sink]
        return sorted(await self._redis.smembers(self._sinks))

    async def list_dead_letters(
        self, *, sink: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        if limit <= 0:
            return []
        letters: list[tuple[float, tuple[int, int], DeadLetter]] = []
        with _unavailable("read"):
            for name in await self._sink_names(sink):
                for entry_id, fields in await self._redis.xrevrange(self._dead(name), count=limit):
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
        self, *, sink: str | None = None, event_ids: Sequence[str] = ()
    ) -> int:
        client = self._redis
        targets: list[tuple[str, str, str]] = []  # (event id, sink, dead entry id or "")
        with _unavailable("read"):
            if event_ids:
                for eid in dict.fromkeys(event_ids):
                    stored = self._stored(await client.hgetall(self._event_key(eid)))
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
                        page = await client.xrange(self._dead(name), min=lower, count=PAGE)
                        targets.extend(
                            (fields.get("event", ""), name, entry_id) for entry_id, fields in page
                        )
                        if len(page) < PAGE:
                            break
                        lower = f"({page[-1][0]}"
        revived = 0
        now = _num(time.time())
        with _unavailable("dead letter retry"):
            for eid, name, entry_id in targets:
                keys = [self._event_key(eid), self._queue(name), self._dead(name), self._sinks]
                revived += await self._run("revive", keys, [name, GROUP, now, entry_id, eid])
        return revived

    async def replay(self, event_id: str, sinks: Sequence[str]) -> int:
        names = list(dict.fromkeys(sinks))
        keys = [self._event_key(event_id), self._sinks]
        for name in names:
            keys += [self._queue(name), self._retry(name), self._lease(name), self._dead(name)]
        with _unavailable("replay"):
            return int(
                await self._run("replay", keys, [event_id, GROUP, _num(time.time()), *names])
            )

    async def queue_depth(self) -> dict[str, dict[str, int]]:
        with _unavailable("read"):
            rows = await self._run("depth", [self._sinks], [GROUP, self.prefix])
        depth: dict[str, dict[str, int]] = {}
        for sink, pending, inflight, dead in rows:
            counts = {"pending": pending, "inflight": inflight, "dead": dead}
            counts = {state: int(n) for state, n in counts.items() if n}
            if counts:
                depth[sink] = counts
        return depth

    async def purge(self, *, retention: float) -> int:
        """Forget delivered events older than ``retention`` seconds and consumers of dead
        processes (idempotency keys expire by themselves)."""
        client = self._redis
        cutoff = time.time() - retention
        removed = 0
        with _unavailable("purge"):
            lower = "-"
            while True:
                page = await client.xrange(self._log, min=lower, count=PAGE)
                old = [
                    (fields.get("event", ""), entry_id)
                    for entry_id, fields in page
                    if float(fields.get("received", 0)) < cutoff
                ]
                if old:
                    args: list[Any] = [_num(cutoff), f"{self.prefix}:event:"]
                    for pair in old:
                        args.extend(pair)
                    removed += int(await self._run("purge", [self._log], args))
                if len(page) < PAGE or len(old) < len(page):
                    break
                lower = f"({page[-1][0]}"
            for sink in await client.smembers(self._sinks):
                await self._run(
                    "forget_consumers",
                    [self._queue(sink)],
                    [GROUP, self.consumer, STALE_CONSUMER_MS],
                )
        return removed


def _json_record(raw: str) -> dict[str, Any]:
    value = json.loads(raw)
    return value if isinstance(value, dict) else {}
