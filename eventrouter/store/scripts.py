"""The Redis store's keys and its Lua scripts (``lua/*.lua``), each script behind one typed method.

Every script starts by naming its ``KEYS`` and ``ARGV`` (``local queue = KEYS[1]`` ...); the
method of the same name here passes them in that order, so the order is written down twice, side
by side, and nowhere else. ``lua/helpers.lua`` is put in front of every script.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any, Literal

from attrs import frozen
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from eventrouter.events import Event

__all__ = [
    "GROUP",
    "SCRIPT_NAMES",
    "Claimed",
    "EndClaim",
    "Keys",
    "Outcome",
    "Scripts",
    "number",
    "script_source",
]

#: the consumer group of every sink's queue stream
GROUP = "workers"

SCRIPT_NAMES = (
    "ingest",
    "claim",
    "end_claim",
    "revive",
    "replay",
    "next_due",
    "queue_depth",
    "purge",
    "forget_consumers",
    "control_put",
    "rate_permit",
)

#: the state ``end_claim`` leaves a delivery in (DeliveryState values)
Outcome = Literal["done", "pending", "dead"]


def script_source(name: str) -> str:
    """The Lua a script runs: the shared helpers, then ``lua/NAME.lua``."""
    folder = resources.files(__package__).joinpath("lua")
    helpers = folder.joinpath("helpers.lua").read_text(encoding="utf-8")
    return helpers + folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")


def number(value: float) -> str:
    """A float as a string that reads back as the same float (Lua and listings parse it)."""
    return repr(float(value))


@frozen
class Keys:
    """The names of the keys (and pub/sub channels) of one ``[store] key_prefix``."""

    prefix: str

    def event(self, event_id: str) -> str:
        return f"{self.event_prefix}{event_id}"

    @property
    def event_prefix(self) -> str:
        return f"{self.prefix}:event:"

    def queue(self, sink: str) -> str:
        return f"{self.prefix}:queue:{sink}"

    def retry(self, sink: str) -> str:
        return f"{self.prefix}:retry:{sink}"

    def lease(self, sink: str) -> str:
        return f"{self.prefix}:lease:{sink}"

    def dead(self, sink: str) -> str:
        return f"{self.prefix}:dead:{sink}"

    @property
    def wake_prefix(self) -> str:
        """The pub/sub channel of sink S is this + S (a channel, not a key)."""
        return f"{self.prefix}:wake:"

    def wake(self, sink: str) -> str:
        return f"{self.wake_prefix}{sink}"

    def control(self, sink: str) -> str:
        """The sink's control hash (circuit and pause, eventrouter.circuit)."""
        return f"{self.prefix}:control:{sink}"

    def rate(self, sink: str) -> str:
        """The sink's rate-limit key (eventrouter.ratelimit)."""
        return f"{self.prefix}:rate:{sink}"

    @property
    def events_log(self) -> str:
        return f"{self.prefix}:events"

    @property
    def sinks(self) -> str:
        return f"{self.prefix}:sinks"

    def index(self, kind: str, value: str) -> str:
        """A query index: the events whose ``kind`` is ``value``, scored by received time."""
        return f"{self.prefix}:idx:{kind}:{value}"

    def attempts(self, event_id: str) -> str:
        return f"{self.attempts_prefix}{event_id}"

    @property
    def attempts_prefix(self) -> str:
        """The attempt history of event E is the list this + E."""
        return f"{self.prefix}:attempts:"

    @property
    def layout(self) -> str:
        """The version of this key layout (:data:`eventrouter.store.redis.LAYOUT_VERSION`)."""
        return f"{self.prefix}:layout"

    @property
    def heartbeats(self) -> str:
        """A sorted set of delivering processes scored by when their heartbeat expires."""
        return f"{self.prefix}:heartbeats"

    @property
    def heartbeats_seen(self) -> str:
        """A hash of delivering processes and when each last said it was alive."""
        return f"{self.prefix}:heartbeats-seen"

    def dedupe(self, event: Event) -> str:
        digest = hashlib.sha256(f"{event.source}\x1f{event.idempotency_key}".encode()).hexdigest()
        return f"{self.prefix}:dedupe:{digest}"


@frozen
class Claimed:
    """One delivery ``claim.lua`` handed out."""

    event_id: str
    attempts: int
    token: str
    body: str
    lost: int
    trigger: str


@frozen(kw_only=True)
class EndClaim:
    """The outcome of one claim, for the ``end_claim`` script (``attempt``: JSON, or '')."""

    sink: str
    event_id: str
    token: str
    outcome: Outcome
    attempts: int
    now: float
    due: float
    error: str
    attempt: str = ""


class Scripts:
    """The scripts, registered with ``client`` (which loads them on first use, and again after
    the server restarted)."""

    def __init__(self, client: Redis, keys: Keys) -> None:
        self.keys = keys
        self._client = client
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(script_source(name)) for name in SCRIPT_NAMES
        }

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        # the reply's shape is each script's own: the typed methods below turn it into types
        return await self._scripts[name](keys=list(keys), args=list(args))

    async def ingest(
        self,
        event: Event,
        sinks: Sequence[str],
        *,
        window: float,
        now: float,
        indexes: Sequence[str],
    ) -> tuple[bool, str]:
        """Store ``event`` unless its idempotency key was seen within ``window`` seconds: (stored,
        the id of the event stored under that key); a new event joins the sorted sets
        ``indexes``."""
        k = self.keys
        keys = [k.dedupe(event), k.event(event.id), k.events_log, k.sinks, *indexes]
        args: list[str | int] = [
            event.id,
            max(1, round(window * 1000)),
            event.to_json(),
            event.source,
            event.type,
            number(event.received_at.timestamp()),
            number(now),
            GROUP,
            k.wake_prefix,
            len(indexes),
        ]
        accepted, event_id = await self._run(
            "ingest", [*keys, *map(k.queue, sinks)], [*args, *sinks]
        )
        return bool(accepted), str(event_id)

    async def claim(
        self, sink: str, *, consumer: str, limit: int, lease: float, now: float, error: str
    ) -> list[Claimed]:
        """Up to ``limit`` due deliveries for ``sink``, leased for ``lease`` seconds; taking one
        over from a worker whose lease ended records ``error`` for its attempt."""
        k = self.keys
        rows = await self._run(
            "claim",
            [k.queue(sink), k.retry(sink), k.lease(sink), k.sinks],
            [
                sink,
                GROUP,
                consumer,
                number(now),
                number(lease),
                limit,
                k.event_prefix,
                number(now + lease),
                error,
                k.attempts_prefix,
            ],
        )
        return [
            Claimed(
                event_id=str(eid),
                attempts=int(attempts),
                token=str(token),
                body=body,
                lost=int(n),
                trigger=str(trigger),
            )
            for eid, attempts, token, body, n, trigger in rows
        ]

    def _end_claim_call(self, end: EndClaim) -> tuple[list[str], list[str | int]]:
        k = self.keys
        keys = [
            k.queue(end.sink),
            k.lease(end.sink),
            k.event(end.event_id),
            k.retry(end.sink),
            k.dead(end.sink),
            k.attempts(end.event_id),
        ]
        args: list[str | int] = [
            end.sink,
            GROUP,
            end.token,
            end.outcome,
            end.attempts,
            number(end.now),
            number(end.due),
            number(end.due - end.now),
            end.error,
            end.event_id,
            k.wake(end.sink),
            end.attempt,
        ]
        return keys, args

    async def end_claim(self, end: EndClaim) -> bool:
        """Record the outcome of the claim ``end.token`` (and ``end.attempt``, JSON, in the
        history); False when it is no longer the current claim of the delivery (taken over, or
        recorded already), which then stays as it is."""
        keys, args = self._end_claim_call(end)
        return bool(await self._run("end_claim", keys, args))

    async def end_claims(self, ends: Sequence[EndClaim]) -> list[bool]:
        """:meth:`end_claim` for each of ``ends``, sent together (one round trip, not atomic:
        each outcome is its own script, as it would be alone)."""
        pipe = self._client.pipeline(transaction=False)
        script = self._scripts["end_claim"]
        for end in ends:
            keys, args = self._end_claim_call(end)
            await script(keys=keys, args=args, client=pipe)
        return [bool(ended) for ended in await pipe.execute()]

    async def revive(
        self, event_id: str, sink: str, *, listed_entry: str, now: float, action: str = ""
    ) -> bool:
        """Make a dead delivery pending again; ``listed_entry``: its dead stream entry as a
        listing found it ('' if unknown). False when it was not dead, or ``action`` revived it
        already."""
        k = self.keys
        revived = await self._run(
            "revive",
            [k.event(event_id), k.queue(sink), k.dead(sink), k.sinks],
            [sink, GROUP, number(now), listed_entry, event_id, k.wake(sink), action],
        )
        return bool(revived)

    async def replay(
        self, event_id: str, sinks: Sequence[str], *, now: float, action: str = ""
    ) -> int:
        """Queue a stored event again for ``sinks``; how many deliveries were queued (those
        ``action`` queued already are skipped)."""
        k = self.keys
        keys = [k.event(event_id), k.sinks]
        for sink in sinks:
            keys += [k.queue(sink), k.retry(sink), k.lease(sink), k.dead(sink)]
        args = [event_id, GROUP, number(now), k.wake_prefix, action, *sinks]
        return int(await self._run("replay", keys, args))

    async def next_due(self, sink: str) -> float | None:
        """Seconds until the next delivery for ``sink`` is due by the server's clock (<= 0: now)."""
        k = self.keys
        delay = await self._run("next_due", [k.queue(sink), k.retry(sink), k.lease(sink)], [GROUP])
        return None if delay is None else float(delay)

    async def queue_depth(self) -> list[tuple[str, int, int, int]]:
        """(sink, pending, inflight, dead) for every sink with a queue."""
        rows = await self._run("queue_depth", [self.keys.sinks], [GROUP, self.keys.prefix])
        return [
            (str(sink), int(pending), int(inflight), int(dead))
            for sink, pending, inflight, dead in rows
        ]

    async def purge(self, candidates: Sequence[tuple[str, str]], *, cutoff: float) -> int:
        """Delete those of ``candidates`` (event id, events log entry) that are delivered and
        were received before ``cutoff``; how many were deleted."""
        args: list[str | int] = [number(cutoff), self.keys.event_prefix, self.keys.attempts_prefix]
        for event_id, log_entry in candidates:
            args += [event_id, log_entry]
        return int(await self._run("purge", [self.keys.events_log], args))

    async def forget_consumers(self, sink: str, *, consumer: str, idle_ms: int) -> int:
        """Remove idle consumers owning nothing from ``sink``'s group: ``idle_ms`` 0 only
        ``consumer``, otherwise every other consumer idle that long."""
        return int(
            await self._run("forget_consumers", [self.keys.queue(sink)], [GROUP, consumer, idle_ms])
        )

    async def control_put(self, sink: str, *, version: int, data: str) -> bool:
        """Write the sink's control record unless another writer changed it since ``version``."""
        k = self.keys
        written = await self._run("control_put", [k.control(sink)], [version, data, k.wake(sink)])
        return bool(written)

    async def rate_permit(self, sink: str, *, interval: float) -> float:
        """0 when one permit of the sink's rate limit is taken, else the seconds to wait."""
        wait = await self._run("rate_permit", [self.keys.rate(sink)], [number(interval)])
        return float(wait)
