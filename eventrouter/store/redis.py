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
- ``P:wake:SINK`` a pub/sub channel (not a key): every script that makes work for a sink
  (ingest, a retry scheduled, a dead letter revived, a replay) publishes on it, and the workers
  listening (:meth:`RedisStore.watch`) claim at once instead of polling.

Every operation that changes state is one Lua script, so it is atomic (ingest: dedupe key,
event hash and one ``XADD`` per sink). Scheduling uses the Redis server's clock, so processes
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
import hashlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from eventrouter.circuit import SinkControl
from eventrouter.errors import Overloaded, StoreUnavailable
from eventrouter.events import Event
from eventrouter.store.base import (
    LOST_WORKER,
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
#: after a failed attempt to reach the server, callers within this many seconds fail at once
RECONNECT_INTERVAL = 0.5
#: the wait between attempts to listen for queued work grows from the first to the second
WATCH_RETRY = (0.1, 5.0)

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
# ARGV: event id, window ms, body, source, type, received, now, group, wake channel prefix,
# sink names...
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
for i = 10, #ARGV do
  local sink, stream = ARGV[i], KEYS[i - 5]
  redis.call('SADD', KEYS[4], sink)
  ensure_queue(stream, ARGV[8])
  local entry = redis.call('XADD', stream, '*', 'event', eid)
  save(KEYS[2], sink, {state = 'pending', attempts = 0, due = now, updated = now, entry = entry})
  redis.call('PUBLISH', ARGV[9] .. sink, eid)
end
redis.call('SET', KEYS[1], eid, 'PX', ARGV[2])
return {1, eid}
"""

# KEYS: queue stream, retry zset, lease zset, sinks set
# ARGV: sink, group, consumer, now, lease seconds, limit, event key prefix, lease end (shown),
# the error recorded for an attempt whose worker was lost
# Returns {event id, attempts, token, body, lost} per delivery claimed. The token is the stream
# entry id and the claim's serial number: an outcome recorded with the token of an earlier
# claim of the same entry (a worker that outlived its lease) changes nothing.
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
local out = {}
local function take(id, eid, rec, body)
  rec.state = 'inflight'
  rec.due = ARGV[8]
  rec.updated = ARGV[4]
  rec.claim = (tonumber(rec.claim) or 0) + 1
  save(prefix .. eid, sink, rec)
  redis.call('ZADD', KEYS[3], score(server_now + lease), eid)
  out[#out + 1] = {eid, rec.attempts, id .. '/' .. rec.claim, body, rec.lost or 0}
end
-- take over deliveries whose lease (as the worker that claimed them set it) has ended: that
-- worker died, and its attempt counts as a failed one
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', score(server_now), 'LIMIT', 0, limit)
for _, eid in ipairs(expired) do
  local rec = load(prefix .. eid, sink)
  local body = redis.call('HGET', prefix .. eid, 'body')
  if rec and rec.state == 'inflight' and body then
    rec.attempts = (tonumber(rec.attempts) or 0) + 1
    rec.lost = (tonumber(rec.lost) or 0) + 1
    rec.error = ARGV[9]
    local claimed = {}
    if rec.entry then
      claimed = redis.call('XCLAIM', KEYS[1], group, consumer, 0, rec.entry)
    end
    if type(claimed[1]) == 'table' then
      take(rec.entry, eid, rec, body)
    else
      -- its queue entry is gone: queue the delivery again
      if rec.entry then redis.call('XACK', KEYS[1], group, rec.entry) end
      rec.state = 'pending'
      rec.due = ARGV[4]
      rec.updated = ARGV[4]
      rec.entry = redis.call('XADD', KEYS[1], '*', 'event', eid)
      save(prefix .. eid, sink, rec)
      redis.call('ZREM', KEYS[3], eid)
    end
  else
    redis.call('ZREM', KEYS[3], eid)
  end
end
if limit - #out > 0 then
  local read = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', limit - #out,
    'STREAMS', KEYS[1], '>')
  if read then
    for _, entry in ipairs(read[1][2]) do
      local id, fields = entry[1], entry[2]
      local eid = fields and fields[2]
      local rec, body
      if eid then
        rec = load(prefix .. eid, sink)
        body = redis.call('HGET', prefix .. eid, 'body')
      end
      if rec and rec.entry == id and body then
        take(id, eid, rec, body)
      else
        redis.call('XACK', KEYS[1], group, id)
        redis.call('XDEL', KEYS[1], id)
      end
    end
  end
end
return out
"""

# KEYS: queue stream, lease zset, event hash, retry zset, dead stream
# ARGV: sink, group, token, new state, attempts, now, due (shown), delay seconds, error, event id,
# wake channel
_SETTLE = """
local sink, group, state = ARGV[1], ARGV[2], ARGV[4]
local token, serial = string.match(ARGV[3], '^([^/]*)/?(.*)$')
local rec = load(KEYS[3], sink)
if not rec or rec.state ~= 'inflight' or rec.entry ~= token then return 0 end
if serial ~= '' and tostring(rec.claim) ~= serial then return 0 end
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
  redis.call('PUBLISH', ARGV[11], ARGV[10])
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
# ARGV: sink, group, now, dead entry id seen in a listing (or ''), event id, wake channel
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
rec.lost = nil
rec.due = ARGV[3]
rec.updated = ARGV[3]
rec.entry = redis.call('XADD', KEYS[2], '*', 'event', ARGV[5])
save(KEYS[1], sink, rec)
redis.call('PUBLISH', ARGV[6], ARGV[5])
return 1
"""

# KEYS: event hash, sinks set, then per sink: queue stream, retry zset, lease zset, dead stream
# ARGV: event id, group, now, wake channel prefix, sink names...
_REPLAY = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local eid, group, now = ARGV[1], ARGV[2], ARGV[3]
for i = 5, #ARGV do
  local sink, base = ARGV[i], 2 + (i - 5) * 4
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
  redis.call('PUBLISH', ARGV[4] .. sink, eid)
end
return #ARGV - 4
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
        self.prefix = key_prefix
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
        self._scripts: dict[str, AsyncScript] = {}
        self._pending = 0
        #: the server has answered and passed the checks of :func:`_check_server`
        self._ready = False
        self._connect_lock = asyncio.Lock()
        self._next_connect = 0.0
        self._connect_error = ""
        self._watching = False

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
    def _wake_prefix(self) -> str:
        """The pub/sub channel of sink S is this + S (a channel, not a key)."""
        return f"{self.prefix}:wake:"

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
        return self._sentinel.master_for(
            self.service_name,
            redis_class=Redis,
            ssl=urlsplit(self.url).scheme == "rediss",
            **{**options, **from_url},
        )

    async def open(self, *, lazy: bool = False) -> None:
        try:
            client = self._make_client()
        except ValueError as exc:
            raise StoreUnavailable(f"invalid Redis url for {self.where}: {exc}") from None
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
        # registered here, loaded by the server on first use (again after a restart of it)
        self._scripts = {
            name: client.register_script(_LUA_HELPERS + body) for name, body in sources.items()
        }
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
            except StoreUnavailable as exc:
                # callers arriving within the next moment hear the same, without another try
                self._next_connect = time.monotonic() + RECONNECT_INTERVAL
                self._connect_error = str(exc)
                raise
            if self._connect_error:
                log.info("Redis at %s answers now", self.where)
            self._ready = True

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
        if client is None:
            return
        if self._ready:
            try:
                async with asyncio.timeout(self.operation_timeout):
                    for sink in await client.smembers(self._sinks):
                        # forget this process's consumer if it holds nothing (a restart gets a
                        # new one)
                        await self._scripts["forget_consumers"](
                            keys=[self._queue(sink)], args=[GROUP, self.consumer, 0], client=client
                        )
            except (RedisError, OSError) as exc:  # TimeoutError is an OSError
                log.debug("could not remove consumer %s: %s", self.consumer, exc)
        self._ready = False
        await client.aclose()
        sentinel, self._sentinel = self._sentinel, None
        for node in sentinel.sentinels if sentinel is not None else ():
            await node.aclose()

    async def _run(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        client = await self._connected()
        return await self._scripts[script](keys=list(keys), args=list(args), client=client)

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
        channels = {f"{self._wake_prefix}{sink}": sink for sink in sinks}
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
            self._wake_prefix,
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
            LOST_WORKER,
        ]
        with _unavailable("claim"):
            rows = await self._run("claim", keys, args)
        return [
            Delivery(
                event=Event.from_json(body),
                sink=sink,
                attempts=int(attempts),
                token=token,
                lost=int(lost),
            )
            for _, attempts, token, body, lost in rows
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
        count_attempt: bool = True,
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
            delivery.attempts + (1 if count_attempt else 0),
            _num(now),
            _num(due),
            _num(due - now),
            error,
            delivery.event.id,
            f"{self._wake_prefix}{sink}",
        ]
        with _unavailable(f"{state.value} update"):
            await self._run("settle", keys, args)

    async def ack(self, delivery: Delivery) -> None:
        await self._settle(delivery, DeliveryState.DONE)

    async def retry_later(self, delivery: Delivery, *, at: datetime, error: str) -> None:
        await self._settle(delivery, DeliveryState.PENDING, at=at, error=error)

    async def dead_letter(
        self, delivery: Delivery, *, error: str, count_attempt: bool = True
    ) -> None:
        await self._settle(delivery, DeliveryState.DEAD, error=error, count_attempt=count_attempt)

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
            fields = await (await self._connected()).hgetall(self._event_key(event_id))
        return self._stored(fields)

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
        return sorted(await (await self._connected()).smembers(self._sinks))

    async def list_dead_letters(
        self, *, sink: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        if limit <= 0:
            return []
        letters: list[tuple[float, tuple[int, int], DeadLetter]] = []
        with _unavailable("read"):
            for name in await self._sink_names(sink):
                for entry_id, fields in await (await self._connected()).xrevrange(
                    self._dead(name), count=limit
                ):
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
        client = await self._connected()
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
                args = [name, GROUP, now, entry_id, eid, f"{self._wake_prefix}{name}"]
                revived += await self._run("revive", keys, args)
        return revived

    async def replay(self, event_id: str, sinks: Sequence[str]) -> int:
        names = list(dict.fromkeys(sinks))
        keys = [self._event_key(event_id), self._sinks]
        for name in names:
            keys += [self._queue(name), self._retry(name), self._lease(name), self._dead(name)]
        with _unavailable("replay"):
            return int(
                await self._run(
                    "replay", keys, [event_id, GROUP, _num(time.time()), self._wake_prefix, *names]
                )
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
        client = await self._connected()
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

    # -- sink control (see eventrouter.circuit; scripts in store/lua/) ----------------------

    #: the sink-control scripts, registered on first use
    _control_scripts: dict[str, AsyncScript] | None = None

    def _control(self, sink: str) -> str:
        return f"{self.prefix}:control:{sink}"

    async def _run_lua(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        client = await self._connected()
        if self._control_scripts is None:
            self._control_scripts = {
                script: client.register_script(_lua_file(script))
                for script in ("control_put", "rate_permit")
            }
        return await self._control_scripts[name](keys=list(keys), args=list(args), client=client)

    async def get_control(self, sink: str) -> SinkControl:
        with _unavailable("read"):
            version, data = await (await self._connected()).hmget(
                self._control(sink), ["version", "data"]
            )
        if not data:
            return SinkControl()
        return SinkControl.from_json(str(data), version=int(version or 0))

    async def put_control(self, sink: str, control: SinkControl) -> bool:
        with _unavailable("sink control update"):
            written = await self._run_lua(
                "control_put",
                [self._control(sink)],
                [control.version, control.to_json(), f"{self._wake_prefix}{sink}"],
            )
        return bool(written)

    async def rate_permit(self, sink: str, *, interval: float) -> float:
        with _unavailable("rate limit"):
            wait = await self._run_lua(
                "rate_permit", [f"{self.prefix}:rate:{sink}"], [_num(interval)]
            )
        return float(wait)

    async def release(self, delivery: Delivery, *, at: datetime, error: str) -> None:
        await self._settle(delivery, DeliveryState.PENDING, at=at, error=error, count_attempt=False)


def _lua_file(name: str) -> str:
    """The text of ``store/lua/NAME.lua`` (package data)."""
    return resources.files("eventrouter.store").joinpath("lua", f"{name}.lua").read_text("utf-8")


def _json_record(raw: str) -> dict[str, Any]:
    value = json.loads(raw)
    return value if isinstance(value, dict) else {}
