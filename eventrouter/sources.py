"""What a source plugin implements: authenticate and parse one webhook request, sans I/O.

A source sees a :class:`WebhookRequest` (headers, query, raw body) and nothing of aiohttp, so
it can be tested and fuzzed as a pure function.
"""

from __future__ import annotations

import abc
import hmac
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, ClassVar

import attrs
from attrs import field, frozen
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

from eventrouter.events import Event, EventData, new_event_id, utcnow

__all__ = [
    "EventParts",
    "NoOptions",
    "SignedRequest",
    "Source",
    "WebhookRequest",
    "any_digest_matches",
]


def _headers(value: Mapping[str, str] | Iterable[tuple[str, str]]) -> CIMultiDictProxy[str]:
    if isinstance(value, CIMultiDictProxy):
        return value
    return CIMultiDictProxy(CIMultiDict(value))


def _query(value: Mapping[str, str] | Iterable[tuple[str, str]]) -> MultiDictProxy[str]:
    if isinstance(value, MultiDictProxy):
        return value
    return MultiDictProxy(MultiDict(value))


@frozen
class WebhookRequest:
    """One incoming webhook request: everything a source needs, nothing it must not touch."""

    body: bytes
    headers: CIMultiDictProxy[str] = field(factory=dict, converter=_headers)
    query: MultiDictProxy[str] = field(factory=dict, converter=_query)
    method: str = "POST"
    path: str = "/"
    #: the client's IP address as ``[server] trusted_proxies`` resolves it: the peer's own, or,
    #: when the peer is a trusted proxy, the client its ``X-Forwarded-For`` names; a bare
    #: address (no port or brackets), so ``ipaddress.ip_address`` reads it; None when unknown
    remote: str | None = None

    @property
    def content_type(self) -> str:
        """The media type of the body, lower-case and without parameters."""
        return self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


@frozen
class SignedRequest:
    """Headers and query parameters that make a body genuine to a source (see :meth:`Source.sign`)."""

    headers: dict[str, str] = field(factory=dict)
    query: dict[str, str] = field(factory=dict)


@frozen
class EventParts:
    """What a source reads from one webhook: all of an :class:`Event` but what the core stamps.

    ``time`` None means the time the request arrived; ``sensitive`` lists dotted paths into
    ``raw`` that hold credentials (see :meth:`Event.redacted`).
    """

    type: str = field(converter=str)
    provider_type: str = field(converter=str)
    idempotency_key: str
    raw: Any
    time: datetime | None = None
    subject: str | None = None
    data: EventData = field(factory=EventData)
    sensitive: tuple[str, ...] = ()


def any_digest_matches(expected: Iterable[bytes], given: bytes) -> bool:
    """True when ``given`` equals one of ``expected``; every comparison is constant-time."""
    matched = False
    for candidate in expected:
        matched |= hmac.compare_digest(candidate, given)
    return matched


@frozen
class NoOptions:
    """Options of a plugin that takes none."""


class Source(abc.ABC):
    """Base class of a source type; one instance per ``[sources.NAME]`` table.

    Subclasses set ``type_name`` (what ``plugin = "..."`` names in the config), ``provider``
    and ``Options`` (a frozen attrs class the table's remaining keys are structured into).
    """

    type_name: ClassVar[str]
    provider: str = ""
    Options: ClassVar[type] = NoOptions
    #: option names whose values are secrets; never logged, printed or stored
    secret_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str, options: Any) -> None:
        self.name = name
        self.options = options

    def check(self) -> Iterable[str]:
        """Problems with the options that types alone cannot catch, as ``option: message``."""
        return ()

    @abc.abstractmethod
    def authenticate(self, request: WebhookRequest) -> None:
        """Raise AuthenticationError unless ``request`` is genuine. Compare in constant time."""

    @abc.abstractmethod
    def parse(self, request: WebhookRequest) -> Event:
        """Normalise an authenticated request into an event, or raise PayloadError."""

    def sign(self, body: bytes, *, content_type: str = "application/json") -> SignedRequest:
        """Headers and query that make ``body`` pass :meth:`authenticate` (for tests and ``send``)."""
        raise NotImplementedError(f"source type {self.type_name!r} cannot sign requests")

    def make_event(self, parts: EventParts | None = None, /, **fields: Any) -> Event:
        """An event from this source, stamped with a new id and the time it was received.

        Pass the :class:`EventParts` a parser returned, or their fields as keywords
        (``make_event(type=..., provider_type=..., idempotency_key=..., raw=...)``); keywords
        given with parts replace those fields.
        """
        if parts is not None:
            fields = {**attrs.asdict(parts, recurse=False), **fields}
        return self._stamp(**fields)

    def _stamp(
        self,
        *,
        type: str,
        provider_type: str,
        idempotency_key: str,
        raw: Any,
        time: datetime | None = None,
        subject: str | None = None,
        data: EventData | None = None,
        sensitive: tuple[str, ...] = (),
    ) -> Event:
        # keywords come straight here (no EventParts made): this is the ingest path's hot end
        received_at = utcnow()
        return Event(
            id=new_event_id(),
            source=self.name,
            type=type,
            time=time or received_at,
            subject=subject,
            provider=self.provider or self.type_name,
            provider_type=provider_type,
            idempotency_key=idempotency_key,
            received_at=received_at,
            data=data or EventData(),
            raw=raw,
            sensitive=sensitive,
        )
