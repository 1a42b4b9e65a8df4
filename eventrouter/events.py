"""The normalised event: one model for every provider, CloudEvents 1.0 compatible.

A sink written against :class:`Contact`, :class:`Call` and :class:`Campaign` works for every
source; the provider's own payload stays available, untouched, in :attr:`Event.raw`.
"""

from __future__ import annotations

import enum
import json
import math
import random
import re
import secrets
import time
import types
import typing
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

import attrs
import msgspec
import orjson
from attrs import field, frozen
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from eventrouter import fastjson
from eventrouter.converter import converter
from eventrouter.errors import PayloadError

__all__ = [
    "REDACTED",
    "AnsweredBy",
    "Call",
    "CallDirection",
    "CallStatus",
    "Campaign",
    "CampaignStatus",
    "Contact",
    "Event",
    "EventData",
    "EventType",
    "TranscriptTurn",
    "new_event_id",
]

REDACTED = "[redacted]"

#: a timestamp with its offset: the model holds no naive times (``Meta(tz=True)`` makes the
#: stores' reader refuse one; the converter's datetime hook refuses one everywhere else)
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]


def _rfc3339(value: datetime) -> datetime:
    """``value`` with an offset RFC 3339 can write; naive times are refused.

    An offset of seconds is a zone's local mean time, before it adopted standard time (Asia/
    Kolkata's +05:53:28 until 1854): a placeholder such as ``0001-01-01 00:00:00`` read in the
    source's ``time_zone`` gets one. Neither RFC 3339 nor the stores' reader has a place for the
    seconds, so such a time is held in UTC, the same instant; where UTC has no date for it (the
    first hours of year 1 east of Greenwich), at its wall time with the offset's seconds dropped.
    """
    zone = value.tzinfo
    if zone is UTC:
        return value
    offset = None if zone is None else value.utcoffset()
    if offset is None:
        raise ValueError("event timestamps must be timezone-aware")
    if offset.seconds % 60 or offset.microseconds:
        try:
            return value.astimezone(UTC)
        except OverflowError:  # the first hours of year 1 east of Greenwich (the last of 9999 west)
            minutes = int(offset.total_seconds() / 60)  # towards zero
            return value.replace(tzinfo=timezone(timedelta(minutes=minutes)))
    return value


def _rfc3339_or_none(value: datetime | None) -> datetime | None:
    # the optional times of the parts, which take what they are given, as they always have
    # (a sink's tests build odd ones); a datetime is held to _rfc3339
    return _rfc3339(value) if isinstance(value, datetime) else value


class EventType(enum.StrEnum):
    """Normalised event types. A provider event outside these keeps ``<provider>.<its type>``."""

    CALL_ENDED = "call.ended"
    CALL_ATTEMPTS_EXHAUSTED = "call.attempts_exhausted"
    CAMPAIGN_TRIGGERED = "campaign.triggered"
    CAMPAIGN_CYCLE_COMPLETED = "campaign.cycle_completed"
    CAMPAIGN_STATUS_CHANGED = "campaign.status_changed"
    CAMPAIGN_COMPLETED = "campaign.completed"


class CallDirection(enum.StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class CallStatus(enum.StrEnum):
    """One vocabulary for call outcomes across providers."""

    QUEUED = "queued"
    RINGING = "ringing"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    FAILED = "failed"
    CANCELED = "canceled"
    UNKNOWN = "unknown"


class AnsweredBy(enum.StrEnum):
    HUMAN = "human"
    MACHINE = "machine"
    UNKNOWN = "unknown"


class CampaignStatus(enum.StrEnum):
    """One vocabulary for campaign states across providers."""

    SCHEDULED = "scheduled"
    ACTIVE = "active"
    PAUSED = "paused"
    COOLDOWN = "cooldown"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    UNKNOWN = "unknown"


@frozen
class Contact:
    """The person an event is about. ``phone`` is E.164 (``+521234567890``) when known."""

    phone: str | None = None
    email: str | None = None
    name: str | None = None
    external_id: str | None = None


@frozen
class TranscriptTurn:
    """One utterance of a call transcript; ``speaker`` is ``agent`` or ``contact``."""

    speaker: str
    text: str
    at: AwareDatetime | None = field(default=None, converter=_rfc3339_or_none)


@frozen
class Call:
    """One call attempt, or (for ``call.attempts_exhausted``) the last of several."""

    id: str | None = None
    direction: CallDirection | None = None
    status: CallStatus = CallStatus.UNKNOWN
    provider_status: str | None = None
    answered_by: AnsweredBy | None = None
    started_at: AwareDatetime | None = field(default=None, converter=_rfc3339_or_none)
    ended_at: AwareDatetime | None = field(default=None, converter=_rfc3339_or_none)
    duration_seconds: int | None = None
    recording_url: str | None = None
    transcript: tuple[TranscriptTurn, ...] = ()
    attempt_ids: tuple[str, ...] = ()
    from_number: str | None = None
    to_number: str | None = None


@frozen
class Campaign:
    """A campaign, and where relevant the run or cycle an event reports on."""

    id: str | None = None
    name: str | None = None
    status: CampaignStatus = CampaignStatus.UNKNOWN
    provider_status: str | None = None
    previous_status: CampaignStatus | None = None
    run_id: str | None = None
    cycle: int | None = None
    next_cycle_at: AwareDatetime | None = field(default=None, converter=_rfc3339_or_none)
    report_url: str | None = None
    stats: dict[str, int | float] = field(factory=dict)


@frozen
class EventData:
    """The normalised part of an event. ``attributes`` holds provider extras worth keeping."""

    contact: Contact | None = None
    call: Call | None = None
    campaign: Campaign | None = None
    attributes: dict[str, Any] = field(factory=dict)


_ids = random.Random(secrets.randbits(128))  # ids must be unique, not secret


def new_event_id() -> str:
    """A new, unique event id: 32 hex digits, the time in milliseconds (48 bits) then 80 random
    bits from a generator seeded once from the OS.

    Time first, so the ids of one moment sort together: the store's keys on the event id (events,
    deliveries, attempts) grow at their end, and a commit writes a few pages of each instead of a
    page per event. 80 random bits keep the ids of a millisecond unique, across processes too.
    Ids are not secrets, so they need not cost a system call each.
    """
    return f"evt_{time.time_ns() // 1_000_000:012x}{_ids.getrandbits(80):020x}"


def _none_if_empty(value: str | None) -> str | None:
    return value or None


@frozen
class Event:
    """A webhook, authenticated, normalised and ready to route.

    ``id``, ``source``, ``type``, ``time``, ``subject`` and ``specversion`` are the CloudEvents
    attributes. ``source`` is the name of the configured source that received the event.
    ``sensitive`` lists dotted paths into ``raw`` (and ``data.attributes``) that hold
    credentials; :meth:`redacted` blanks them before the event reaches a sink.
    """

    id: str
    source: str
    type: str
    time: AwareDatetime = field(converter=_rfc3339)
    provider: str
    provider_type: str
    idempotency_key: str
    received_at: AwareDatetime = field(converter=_rfc3339)
    data: EventData = field(factory=EventData)
    raw: Any = None
    #: an empty subject is no subject (CloudEvents requires a non-empty one when present)
    subject: str | None = field(default=None, converter=_none_if_empty)
    specversion: str = "1.0"
    sensitive: tuple[str, ...] = ()
    #: what :meth:`to_json` wrote (not a field of the event: not compared, copied or written)
    _json: str | None = field(default=None, init=False, eq=False, repr=False)

    def evolve(self, **changes: Any) -> Event:
        """A copy with some fields changed (events are frozen)."""
        return attrs.evolve(self, **changes)

    def redacted(self) -> Event:
        """A copy whose credential fields (``sensitive``) read ``[redacted]``."""
        if not self.sensitive:
            return self
        raw = _redact(self.raw, self.sensitive)
        attributes = _redact(self.data.attributes, self.sensitive)
        return attrs.evolve(self, raw=raw, data=attrs.evolve(self.data, attributes=attributes))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` reads it back into an equal event."""
        unstructured: dict[str, Any] = converter.unstructure(self)
        return unstructured

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> Event:
        return converter.structure(value, cls)

    def to_json(self) -> str:
        """Strict JSON (RFC 8259). PayloadError when the event holds what JSON cannot carry.

        A payload can parse and still not be storable: NaN or Infinity (not JSON, though
        Python's parser accepts them), a lone UTF-16 surrogate escape (``"\\ud800"``: no UTF-8
        for it), nesting deeper than the encoder's recursion limit. Written once per event
        (it is frozen): ingest checks it before the store writes it.
        """
        if self._json is None:
            object.__setattr__(self, "_json", self._write_json())
        return self._json  # type: ignore[return-value]

    def _write_json(self) -> str:
        campaign = self.data.campaign
        # orjson would write them as null: look for them where cattrs does not (the JSON parts)
        found = _scan(self.raw, self.data.attributes, campaign.stats if campaign else None)
        if found == _NON_FINITE:
            raise PayloadError("the payload holds a value JSON cannot represent (NaN or Infinity)")
        if not found:  # JSON parts of JSON's types only: written alike by both ways
            try:
                return orjson.dumps(self, default=_fields_of).decode("utf-8")
            except orjson.JSONEncodeError:
                pass  # what orjson does not write (see fastjson): the fallback's rules
        try:
            text = fastjson.dumps(self.to_dict(), _strict_dumps)
        except RecursionError:
            raise PayloadError("the payload is nested too deeply to store") from None
        except UnicodeEncodeError:
            raise PayloadError(
                "the payload holds a lone UTF-16 surrogate escape, which is not valid Unicode"
            ) from None
        except ValueError as exc:
            raise PayloadError(f"the payload holds a value JSON cannot represent ({exc})") from None
        # the old way writes what a field holds, of whatever class (attrs does not check): what
        # the stores' reader would refuse, at every claim of the event, is refused here instead
        try:
            _STORED_READER.decode(text)
        except msgspec.ValidationError as exc:
            raise TypeError(f"the event cannot be stored: {without_value(exc)}") from None
        return text

    @classmethod
    def from_json(cls, text: str | bytes) -> Event:
        return cls.from_dict(fastjson.loads(text, json.loads))

    @classmethod
    def from_stored_json(cls, text: str | bytes) -> Event:
        """An event from JSON that :meth:`to_json` wrote (a store's own): what the stores call
        on the delivery path. For anyone else's JSON use :meth:`from_json`.

        msgspec reads the text straight into the model's classes, checking each value's type
        as it goes, in a third of the time cattrs takes over a parsed document. It does not
        run the classes' ``__init__``: what to_json wrote had been through it. Keys the model
        does not know are skipped (an event written by a later version of eventrouter still
        delivers after a downgrade); a value of the wrong type, a vocabulary word that is no
        member, or a time without its offset is refused (``msgspec.ValidationError``, a
        ValueError naming the path).
        """
        event: Event = _STORED_READER.decode(text)
        return event

    def to_cloudevent(self) -> Any:
        """This event as a ``cloudevents`` SDK CloudEvent (structured JSON data)."""
        from cloudevents.core.v1.event import CloudEvent

        attributes: dict[str, Any] = {
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "specversion": self.specversion,
            "time": self.time,
            "datacontenttype": "application/json",
            "provider": self.provider,
            "providertype": self.provider_type,
            "idempotencykey": self.idempotency_key,
            "receivedat": self.received_at.isoformat(),
        }
        if self.subject is not None:
            attributes["subject"] = self.subject
        if self.sensitive:
            attributes["sensitive"] = ",".join(self.sensitive)
        data = {"data": converter.unstructure(self.data), "raw": self.raw}
        return CloudEvent(attributes=attributes, data=data)

    @classmethod
    def from_cloudevent(cls, cloudevent: Any) -> Event:
        """Read back an event written by :meth:`to_cloudevent`."""
        attributes = cloudevent.get_attributes()
        payload = cloudevent.get_data()
        if isinstance(payload, str | bytes):
            payload = json.loads(payload)
        sensitive = attributes.get("sensitive")
        return cls(
            id=attributes["id"],
            source=attributes["source"],
            type=attributes["type"],
            time=_as_datetime(attributes["time"]),
            subject=attributes.get("subject"),
            specversion=attributes["specversion"],
            provider=attributes["provider"],
            provider_type=attributes["providertype"],
            idempotency_key=attributes["idempotencykey"],
            received_at=_as_datetime(attributes["receivedat"]),
            data=converter.structure(payload["data"], EventData),
            raw=payload["raw"],
            sensitive=tuple(sensitive.split(",")) if sensitive else (),
        )


#: reads the stores' JSON (:meth:`Event.from_stored_json`); one decoder made once
_STORED_READER = msgspec.json.Decoder(Event)


def without_value(error: Exception) -> str:
    """What the stores' reader found wrong and where (``Expected `str`, got `int` - at
    `$.data.call.id```), without the value itself: msgspec quotes a vocabulary word it does
    not know, which could be anything the payload held."""
    return _QUOTED_VALUE.sub("", str(error))


_QUOTED_VALUE = re.compile(r" '.*'(?= - at `)", re.DOTALL)

#: the fields :meth:`Event.to_dict` writes of each class of the model (``_fields_of``)
_MODEL_FIELDS: dict[type, tuple[str, ...]] = {
    cls: tuple(a.name for a in attrs.fields(cls) if a.init)
    for cls in (Event, EventData, Contact, Call, TranscriptTurn, Campaign)
}


def _field_checks(
    cls: type,
) -> tuple[tuple[str, frozenset[type] | None, frozenset[type] | None], ...]:
    """What :func:`_fields_of` checks of each field of ``cls``, read off its type hints: the
    exact classes its value may be (None's too, if optional), and for a tuple or a dict, those
    of its items (None: anything, for ``Any``: JSON, which ``_scan`` checks). A value of
    another class (a 1 for a str, a str for an enum, a bool for an int) is written the old way,
    whose text the stores' reader then checks: what it would refuse is never stored."""
    hints = typing.get_type_hints(cls)  # Annotated[datetime, ...] read as datetime

    def classes(hint: Any) -> frozenset[type] | None:
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        options = set(typing.get_args(hint) if union else (hint,))
        if not all(isinstance(c, type) and c is not Any for c in options):
            return None  # Any
        if float in options:
            options.add(int)  # JSON has numbers: the reader takes an integer for a float
        return frozenset(options)

    checks: list[tuple[str, frozenset[type] | None, frozenset[type] | None]] = []
    for name in _MODEL_FIELDS[cls]:
        hint = hints[name]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin is tuple:  # tuple[X, ...]: a list is written alike
            checks.append((name, frozenset({tuple, list}), classes(args[0])))
        elif origin is dict:  # dict[str, X]: orjson refuses keys that are not str
            checks.append((name, frozenset({dict}), classes(args[1])))
        else:
            checks.append((name, classes(hint), None))
    return tuple(checks)


#: what :func:`_fields_of` checks, by class of the model
_FIELD_CHECKS = {cls: _field_checks(cls) for cls in _MODEL_FIELDS}


def _fields_of(value: Any) -> dict[str, Any]:
    """orjson's ``default`` for :meth:`Event.to_json`: a model object as the dict of its fields,
    which orjson then writes itself (datetimes, enums, tuples and the JSON parts natively).

    Half the time of :meth:`Event.to_dict` and then orjson, and the same text: the fields in
    the order cattrs writes them, an enum as its value, a datetime as ``isoformat()`` writes it
    (the model holds no offset of seconds, the one place where orjson's text would differ), a
    tuple as an array. Anything else is TypeError, and so is a field holding a value of another
    class than its type hint's (``_FIELD_CHECKS``): the event is then written, or refused, by
    way of :meth:`to_dict`, and read back (see :meth:`Event._write_json`). So is an event whose
    JSON parts hold a value of a type JSON does not have (``_scan``): cattrs and orjson write
    some of those differently.
    """
    kind = type(value)
    checks = _FIELD_CHECKS.get(kind)
    if checks is None:
        raise TypeError(f"{kind.__name__} is not JSON serializable")
    fields = {}
    for name, exact, items in checks:
        field = fields[name] = getattr(value, name)
        if exact is not None and (
            (type(field) not in exact and not _kin(type(field), exact))
            or (
                items is not None
                and not all(
                    type(i) in items or _kin(type(i), items)
                    for i in (field.values() if type(field) is dict else field)
                )
            )
        ):
            raise TypeError(f"{kind.__name__}.{name} holds a value of another class")
    return fields


def _kin(kind: type, classes: frozenset[type]) -> bool:
    """Whether a value of ``kind`` is written as one of ``classes`` would be, by both ways and
    as the stores' reader takes it: a str's subclass (an ``EventType``) for a str, an int's
    (an IntEnum, but no bool) for an int."""
    return (str in classes and issubclass(kind, str)) or (
        int in classes and issubclass(kind, int) and not issubclass(kind, bool)
    )


def _strict_dumps(value: Any) -> str:
    """``json.dumps`` as RFC 8259 allows: UTF-8 only, no NaN or Infinity."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    text.encode("utf-8")  # a lone surrogate has no UTF-8: UnicodeEncodeError
    return text


#: what :func:`_scan` finds in the JSON parts of an event besides JSON: NaN or an infinity, or
#: a value of a type JSON does not have (a datetime or a Contact a plugin left in ``attributes``)
_NON_FINITE = 2
_NOT_JSON = 1


def _scan(*values: Any) -> int:
    """``_NON_FINITE`` when NaN or an infinity is somewhere in ``values`` (JSON-like data), else
    ``_NOT_JSON`` when a value of another type than JSON's is, else 0."""
    return _scan_node(values, 0)


#: how deep :func:`_scan_node` recurses before it walks the rest with an explicit stack
_RECURSION_LIMIT = 64


def _scan_node(node: Any, depth: int) -> int:
    """:func:`_scan` of ``node`` (a dict, list or tuple), at any depth.

    On ingest's path once per request: a call per container and a type check per value take a
    third of the time of a loop over an explicit stack; below ``_RECURSION_LIMIT`` levels (which
    ingest refuses in the raw payload, but attributes may hold) the stack takes over.
    """
    found = 0
    for child in node.values() if isinstance(node, dict) else node:
        kind = type(child)
        if kind is str or kind is int or kind is bool or child is None:
            continue
        if isinstance(child, float):
            if not math.isfinite(child):
                return _NON_FINITE
        elif isinstance(child, dict | list | tuple):
            inner = (
                _scan_stacked(child) if depth >= _RECURSION_LIMIT else _scan_node(child, depth + 1)
            )
            if inner == _NON_FINITE:
                return inner
            found |= inner
        else:
            found = _NOT_JSON
    return found


def _scan_stacked(value: Any) -> int:
    """:func:`_scan_node` without recursion, however deep ``value`` goes."""
    found = 0
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, float):
            if not math.isfinite(node):
                return _NON_FINITE
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)
        elif node is not None and type(node) not in (str, int, bool):
            found = _NOT_JSON
    return found


def _passthrough(value: Any) -> Any:
    return value


def _structure_json(value: Any, _: Any) -> Any:
    return value


def _register_json_hooks() -> None:
    """``raw``, ``attributes`` and ``stats`` hold JSON already: pass them to and from the JSON
    codec as they are instead of letting cattrs walk them value by value (most of the cost)."""
    for cls, fields in ((Event, ("raw",)), (EventData, ("attributes",)), (Campaign, ("stats",))):
        unstructure = {name: override(unstruct_hook=_passthrough) for name in fields}
        converter.register_unstructure_hook(
            # mypy matches **overrides against the flags before **kwargs (they are all overrides)
            cls,
            make_dict_unstructure_fn(cls, converter, **unstructure),  # type: ignore[arg-type]
        )
        structure = {name: override(struct_hook=_structure_json) for name in fields}
        converter.register_structure_hook(
            cls,
            make_dict_structure_fn(cls, converter, **structure),  # type: ignore[arg-type]  # as above
        )


def _as_datetime(value: datetime | str) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def _redact(value: Any, paths: tuple[str, ...]) -> Any:
    """A deep copy of ``value`` with each dotted path that exists in it replaced.

    A path segment that is a number indexes a list (``data.items.0.token``).
    """
    if not isinstance(value, dict | list):
        return value
    result = json.loads(json.dumps(value))
    for path in paths:
        *parents, last = path.split(".")
        node: Any = result
        for part in parents:
            node = _child(node, part)
            if node is None:
                break
        if isinstance(node, dict) and node.get(last) is not None:
            node[last] = REDACTED
        elif (
            isinstance(node, list)
            and last.isdigit()
            and int(last) < len(node)
            and node[int(last)] is not None
        ):
            node[int(last)] = REDACTED
    return result


def _child(node: Any, part: str) -> Any:
    if isinstance(node, dict):
        return node.get(part)
    if isinstance(node, list) and part.isdigit() and int(part) < len(node):
        return node[int(part)]
    return None


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


_register_json_hooks()
