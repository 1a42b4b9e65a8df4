"""What a signed webhook's event is: JMESPath expressions over the body, with ``header(NAME)``.

Every mapping is one JMESPath expression evaluated over the parsed body (a JSON document, or
the form parameters as an object); the extra function ``header('Name')`` reads a request
header, so ``header('X-Event-Id') || data.id`` takes the header when it is there.
"""

from __future__ import annotations

import email.utils
import enum
from collections.abc import Iterator, Mapping
from datetime import datetime, tzinfo
from typing import Any, TypeVar

import attrs
import jmespath
import jmespath.exceptions
import jmespath.functions
from attrs import field, frozen

from eventrouter.errors import PayloadError
from eventrouter.events import (
    AnsweredBy,
    Call,
    CallDirection,
    CallStatus,
    Campaign,
    CampaignStatus,
    Contact,
)
from eventrouter.payload import Payload, email_address

__all__ = [
    "CallMapping",
    "CampaignMapping",
    "ContactMapping",
    "EventMapping",
    "Expression",
    "Values",
    "compile_table",
    "evaluate",
    "header_only",
]

E = TypeVar("E", bound=enum.Enum)


class _Functions(jmespath.functions.Functions):
    """JMESPath's functions plus ``header(name)``: the request header's value, or null."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = headers

    @jmespath.functions.signature({"types": ["string"]})
    def _func_header(self, name: str) -> str | None:
        return self._headers.get(name)


_KNOWN_FUNCTIONS = frozenset(_Functions.FUNCTION_TABLE)


def _function_names(node: Mapping[str, Any]) -> Iterator[str]:
    if node.get("type") == "function_expression":
        yield str(node["value"])
    for child in node.get("children", ()):
        if isinstance(child, Mapping):
            yield from _function_names(child)


@frozen
class Expression:
    """A compiled mapping; :meth:`compile` says what is wrong with a bad one."""

    text: str
    _compiled: Any = field(repr=False, eq=False)

    @classmethod
    def compile(cls, text: str) -> Expression:
        """``text`` compiled; ValueError saying what is wrong with it."""
        try:
            compiled = jmespath.compile(text)
        except jmespath.exceptions.JMESPathError as exc:
            message = str(exc).replace("\n", " ")
            raise ValueError(f"invalid JMESPath expression {text!r}: {message}") from None
        unknown = sorted(set(_function_names(compiled.parsed)) - _KNOWN_FUNCTIONS)
        if unknown:
            raise ValueError(f"unknown function {unknown[0]}() in {text!r}")
        try:  # arity mistakes show only when the expression runs
            compiled.search({}, options=jmespath.Options(custom_functions=_Functions({})))
        except jmespath.exceptions.ArityError as exc:
            raise ValueError(f"{text!r}: {exc}") from None
        except jmespath.exceptions.JMESPathError:
            pass  # a type error over an empty document says nothing about real ones
        return cls(text, compiled)

    def search(self, document: Any, headers: Mapping[str, str]) -> Any:
        """The expression's value; None where the payload's shape does not fit it."""
        try:
            return self._compiled.search(
                document, options=jmespath.Options(custom_functions=_Functions(headers))
            )
        except jmespath.exceptions.JMESPathError:
            return None


def header_only(expression: Expression) -> str | None:
    """The header ``header('Name')`` reads when that call is the whole expression, else None."""
    node = expression._compiled.parsed
    children = node.get("children", [])
    if (
        node.get("type") == "function_expression"
        and node.get("value") == "header"
        and len(children) == 1
        and children[0].get("type") == "literal"
        and isinstance(children[0].get("value"), str)
    ):
        return str(children[0]["value"])
    return None


@frozen
class Values:
    """Mapped values of one request, read as the normalised model's types through the core's
    :class:`Payload` (PayloadError naming ``prefix.name`` when a value cannot be one)."""

    found: Mapping[str, Any]
    prefix: str
    naive_tz: tzinfo
    phone_region: str | None

    @property
    def _payload(self) -> Payload:
        # text_values: a form body's numbers arrive as text, and JMESPath passes them on
        return Payload(
            self.found,
            path=self.prefix,
            naive_tz=self.naive_tz,
            phone_region=self.phone_region,
            text_values=True,
        )

    def text(self, name: str) -> str | None:
        return self._payload.text(name, numbers=True)

    def phone(self, name: str) -> str | None:
        return self._payload.phone(name)

    def time(self, name: str) -> datetime | None:
        try:
            return self._payload.timestamp(name)
        except PayloadError:
            rfc2822 = _rfc2822(self.found.get(name))
            if rfc2822 is None:
                raise
            return rfc2822

    def integer(self, name: str) -> int | None:
        return self._payload.integer(name)

    def choice(self, name: str, vocabulary: type[E]) -> E | None:
        """The vocabulary's member the provider's word names (``no-answer`` is ``no_answer``)."""
        value = self.text(name)
        if value is None:
            return None
        word = value.strip().lower().replace("-", "_").replace(" ", "_")
        word = _SYNONYMS.get(word, word)
        for member in vocabulary:
            if member.value == word or (
                vocabulary in (CallDirection, AnsweredBy) and word.startswith(str(member.value))
            ):
                return member
        return None


_SYNONYMS = {"cancelled": "canceled", "in_process": "in_progress", "noanswer": "no_answer"}


def _rfc2822(value: Any) -> datetime | None:
    """``Tue, 10 Aug 2010 03:45:01 +0000`` (Twilio's form timestamps), or None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else None


def compile_table(table: Any) -> dict[str, Expression]:
    """Each set field of a mapping table, compiled; ValueError naming the field."""
    compiled = {}
    for name, text in attrs.asdict(table, recurse=False).items():
        if text is None:
            continue
        try:
            compiled[name] = Expression.compile(text)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return compiled


def evaluate(
    compiled: Mapping[str, Expression], document: Any, headers: Mapping[str, str]
) -> dict[str, Any]:
    """Each expression's value over one request."""
    return {name: expression.search(document, headers) for name, expression in compiled.items()}


@frozen
class EventMapping:
    """``[sources.NAME.event]``: the event's own attributes."""

    type: str | None = None
    id: str | None = None
    time: str | None = None
    idempotency_key: str | None = None
    subject: str | None = None


@frozen
class ContactMapping:
    """``[sources.NAME.contact]``: who the event is about."""

    phone: str | None = None
    email: str | None = None
    name: str | None = None
    external_id: str | None = None

    @staticmethod
    def build(values: Values) -> Contact | None:
        contact = Contact(
            phone=values.phone("phone"),
            email=email_address(values.found.get("email")),
            name=values.text("name"),
            external_id=values.text("external_id"),
        )
        return None if contact == Contact() else contact


@frozen
class CallMapping:
    """``[sources.NAME.call]``: the call the event reports on."""

    id: str | None = None
    direction: str | None = None
    status: str | None = None
    answered_by: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    duration_seconds: str | None = None
    recording_url: str | None = None
    from_number: str | None = None
    to_number: str | None = None

    @staticmethod
    def build(values: Values) -> Call | None:
        call = Call(
            id=values.text("id"),
            direction=values.choice("direction", CallDirection),
            status=values.choice("status", CallStatus) or CallStatus.UNKNOWN,
            provider_status=values.text("status"),
            answered_by=values.choice("answered_by", AnsweredBy),
            started_at=values.time("started_at"),
            ended_at=values.time("ended_at"),
            duration_seconds=values.integer("duration_seconds"),
            recording_url=values.text("recording_url"),
            from_number=values.phone("from_number"),
            to_number=values.phone("to_number"),
        )
        return None if call == Call() else call


@frozen
class CampaignMapping:
    """``[sources.NAME.campaign]``: the campaign the event reports on."""

    id: str | None = None
    name: str | None = None
    status: str | None = None
    run_id: str | None = None
    cycle: str | None = None
    next_cycle_at: str | None = None
    report_url: str | None = None

    @staticmethod
    def build(values: Values) -> Campaign | None:
        campaign = Campaign(
            id=values.text("id"),
            name=values.text("name"),
            status=values.choice("status", CampaignStatus) or CampaignStatus.UNKNOWN,
            provider_status=values.text("status"),
            run_id=values.text("run_id"),
            cycle=values.integer("cycle"),
            next_cycle_at=values.time("next_cycle_at"),
            report_url=values.text("report_url"),
        )
        return None if campaign == Campaign() else campaign
