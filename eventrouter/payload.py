"""Reading a webhook body: one typed reader whose every error names the field, and the value
parsers (timestamps, phone numbers, email addresses) it and the sources share."""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal, TypeVar, overload
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from attrs import frozen

from eventrouter import fastjson
from eventrouter.errors import PayloadError

__all__ = [
    "MAX_NESTING",
    "Payload",
    "describe",
    "email_address",
    "json_object",
    "nesting_exceeds",
    "parse_timestamp",
    "phone_e164",
    "time_zone",
]

E = TypeVar("E")


def phone_e164(value: Any, *, default_region: str | None = None) -> str | None:
    """``value`` as an E.164 number (``+919876543210``), or None when it is not a phone number.

    Numbers without a leading ``+`` are read in ``default_region`` (ISO 3166 code, e.g. ``IN``);
    placeholder numbers providers put in examples (``+000000000000``) give None.
    """
    if value is None or isinstance(value, bool):
        return None
    return _e164(str(value).strip(), default_region)


#: numbers remembered by :func:`phone_e164` (about 200 bytes each)
PHONE_CACHE_SIZE = 8192


@functools.lru_cache(maxsize=PHONE_CACHE_SIZE)
def _e164(text: str, default_region: str | None) -> str | None:
    """:func:`phone_e164` of a stripped text. phonenumbers is pure Python, 15-20 µs a number,
    and an event names the same numbers more than once (the contact in two places, the
    caller id on every call of a campaign; a contact's events follow each other): the
    answers are remembered, the most recent first."""
    if not text or any(ch.isalpha() for ch in text):
        return None  # phonenumbers would read letters as keypad digits ("0XXX4890")
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_EMAIL = re.compile(r"^[^@\s\[\]<>(),;:\"]+@[^@\s\[\]<>(),;:\"]+\.[^@\s\[\]<>(),;:\".]+$")


def email_address(value: Any) -> str | None:
    """``value`` as an email address (stripped), or None when it cannot be one.

    A plausibility check, not RFC 5322: it keeps out what a CRM would refuse and a sink could
    not use, such as the ``[email protected]`` that address obfuscation leaves in copied pages.
    """
    if not isinstance(value, str):
        return None
    text = value.strip()
    return text if _EMAIL.match(text) else None


def time_zone(name: str) -> tzinfo:
    """The IANA time zone ``name``; ValueError naming it when it does not exist."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name such as 'Asia/Kolkata')"
        ) from None


_NOT_A_TIMESTAMP = "expected Unix seconds or an ISO 8601 timestamp, got "


def parse_timestamp(
    value: Any, *, field: str | None = None, naive_tz: tzinfo = UTC, required: bool = False
) -> datetime | None:
    """A timezone-aware datetime from ISO 8601 (``Z`` or offset), ``YYYY-MM-DD HH:MM:SS`` or Unix seconds.

    A timestamp without an offset is taken in ``naive_tz``. Anything else is a PayloadError
    naming ``field``; its message never quotes the value.
    """
    if value is None or value == "":
        if required:
            raise PayloadError("required timestamp is missing", field=field)
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise PayloadError("Unix timestamp is out of range", field=field) from None
    if not isinstance(value, str):
        raise PayloadError(_NOT_A_TIMESTAMP + describe(value), field=field)
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        result = datetime.fromisoformat(text)
    except ValueError:
        raise PayloadError(_NOT_A_TIMESTAMP + "string", field=field) from None
    if result.tzinfo is None:
        result = result.replace(tzinfo=naive_tz)
    try:
        result.astimezone(UTC)
    except (OverflowError, ValueError):
        raise PayloadError("timestamp is out of range", field=field) from None
    return result


def json_object(body: bytes) -> dict[str, Any]:
    """Decode a JSON object body, or raise a PayloadError saying what is wrong with it."""
    value = fastjson.loads(body, _strict_loads)
    if not isinstance(value, dict):
        raise PayloadError(f"expected a JSON object, got {type(value).__name__}")
    return value


#: containers nested deeper than this are refused (webhooks are a few levels deep; deeper
#: nesting only serves to exhaust a parser's or an encoder's recursion)
MAX_NESTING = 64


def nesting_exceeds(value: Any, limit: int = MAX_NESTING) -> bool:
    """True when lists and objects in ``value`` nest deeper than ``limit``, however deep they go.

    It recurses (a call per container: a third of the time of a loop over an explicit stack,
    on ingest's path once per request), never more than ``limit`` calls deep; a limit beyond
    ``_RECURSION_LIMIT`` is checked with the explicit stack instead.
    """
    if not isinstance(value, dict | list):
        return False
    if limit > _RECURSION_LIMIT:
        return _nesting_exceeds_stacked(value, limit)
    return _deeper_than(value, limit, 1)


#: how deep the payload walks recurse at most (Python's own limit is 1,000 frames)
_RECURSION_LIMIT = 200


def _deeper_than(node: dict[Any, Any] | list[Any], limit: int, depth: int) -> bool:
    """True when ``node`` (a container ``depth`` levels deep) or one inside it passes ``limit``."""
    if depth > limit:
        return True
    for child in node.values() if isinstance(node, dict) else node:
        kind = type(child)
        if kind is str or kind is int or kind is float or kind is bool or child is None:
            continue  # the values that fill a payload, skipped at the cost of a type check
        if isinstance(child, dict | list) and _deeper_than(child, limit, depth + 1):
            return True
    return False


def _nesting_exceeds_stacked(value: Any, limit: int) -> bool:
    """:func:`nesting_exceeds` without recursion, for limits deeper than recursion may go."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Iterable[Any] = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _strict_loads(body: bytes) -> Any:
    """``json.loads``, refusing what is not JSON (NaN, Infinity) with a PayloadError."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"body is not valid UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_not_json)
    except RecursionError:
        raise PayloadError("JSON body is nested too deeply") from None
    except ValueError as exc:
        raise PayloadError(f"body is not valid JSON: {exc}") from None


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def describe(value: Any) -> str:
    """The JSON type of ``value`` for an error message, which must not quote the value itself."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


@frozen
class Payload:
    """A JSON object of a webhook, read field by field.

    Each getter takes one or more keys (the first present wins: providers spell one field
    several ways) and returns the typed value, or None when the field is absent, null or "".
    A value of the wrong type is a PayloadError naming the field's path (``call.duration``,
    ``transcript[2].sent_at``) and the JSON type found, never the value itself.

    ``text_values``: the body was form-encoded (or may be), so numbers and booleans arrive as
    text, and text is stripped of surrounding whitespace.
    """

    data: Mapping[str, Any]
    path: str = ""
    naive_tz: tzinfo = UTC
    phone_region: str | None = None
    text_values: bool = False

    @classmethod
    def from_body(
        cls, body: bytes, *, naive_tz: tzinfo = UTC, phone_region: str | None = None
    ) -> Payload:
        """The JSON object a body holds, or a PayloadError saying what is wrong with it."""
        return cls(json_object(body), naive_tz=naive_tz, phone_region=phone_region)

    def field(self, key: str) -> str:
        """The path of ``key`` in the body, as error messages name it."""
        return f"{self.path}.{key}" if self.path else key

    def get(self, *keys: str) -> Any:
        """The raw value of the first of ``keys`` present (not None, not ""), else None."""
        return self._first(keys)[1]

    def _first(self, keys: tuple[str, ...], required: str | None = None) -> tuple[str, Any]:
        """The first key present and its value; ``required`` names what must be there."""
        for key in keys:
            value = self.data.get(key)
            if value is None or value == "":
                continue
            if self.text_values and isinstance(value, str) and not value.strip():
                continue  # a form field left blank
            return key, value
        if required:
            raise PayloadError(f"required {required} is missing", field=self.field(keys[0]))
        return keys[0], None

    def _wrong(self, key: str, what: str, value: Any) -> PayloadError:
        return PayloadError(f"expected {what}, got {describe(value)}", field=self.field(key))

    @overload
    def text(self, *keys: str, numbers: bool = ..., required: Literal[True]) -> str: ...
    @overload
    def text(self, *keys: str, numbers: bool = ..., required: bool = ...) -> str | None: ...
    def text(self, *keys: str, numbers: bool = False, required: bool = False) -> str | None:
        """A string; with ``numbers``, a number is read as its text too (ids, codes)."""
        key, value = self._first(keys, "string" if required else None)
        if isinstance(value, int | float) and not isinstance(value, bool) and numbers:
            value = str(value)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._wrong(key, "a string or number" if numbers else "a string", value)
        return value.strip() if self.text_values else value

    @overload
    def identifier(self, *keys: str, required: Literal[True]) -> str: ...
    @overload
    def identifier(self, *keys: str, required: bool = ...) -> str | None: ...
    def identifier(self, *keys: str, required: bool = False) -> str | None:
        """An id, which providers send as a string or an integer, as text."""
        key, value = self._first(keys, "id" if required else None)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self._wrong(key, "a string or an integer", value)
        return str(value)

    def number(self, *keys: str, minimum: float | None = None) -> float | None:
        """A finite number (``text_values``: also written as text, ``"12.5"``)."""
        key, value = self._first(keys)
        return None if value is None else self._number(key, value, "a number", minimum)

    def integer(self, *keys: str, minimum: int | None = None) -> int | None:
        """A whole number; ``45.0`` reads as 45, ``4.5`` is an error."""
        key, value = self._first(keys)
        if value is None:
            return None
        number = self._number(key, value, "a whole number", minimum)
        if not float(number).is_integer():
            raise self._wrong(key, "a whole number", value)
        return int(number)

    def _number(self, key: str, value: Any, what: str, minimum: float | None) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise self._wrong(key, what, value)
        if isinstance(value, str) and not self.text_values:
            raise self._wrong(key, what, value)
        try:
            number = float(value)
        except ValueError:
            raise self._wrong(key, what, value) from None
        except OverflowError:  # an integer of hundreds of digits
            number = math.inf
        if not math.isfinite(number):
            raise PayloadError(f"expected {what}, got one out of range", field=self.field(key))
        if minimum is not None and number < minimum:
            raise PayloadError(
                f"expected {what} of at least {minimum:g}, got a smaller one", field=self.field(key)
            )
        return number

    def boolean(self, *keys: str) -> bool | None:
        """``true`` or ``false`` (``text_values``: also ``"true"`` and ``"false"``)."""
        key, value = self._first(keys)
        if isinstance(value, str) and self.text_values and value.strip().lower() in _BOOLEANS:
            return _BOOLEANS[value.strip().lower()]
        if value is None or isinstance(value, bool):
            return value
        raise self._wrong(key, "true or false", value)

    @overload
    def timestamp(self, *keys: str, required: Literal[True]) -> datetime: ...
    @overload
    def timestamp(self, *keys: str, required: bool = ...) -> datetime | None: ...
    def timestamp(self, *keys: str, required: bool = False) -> datetime | None:
        """An aware datetime (see :func:`parse_timestamp`); naive ones are in ``naive_tz``."""
        key, value = self._first(keys)
        return parse_timestamp(
            value, field=self.field(key), naive_tz=self.naive_tz, required=required
        )

    def phone(self, *keys: str, region: str | None = None) -> str | None:
        """A phone number in E.164, or None when the value is not one (read in ``region``)."""
        key, value = self._first(keys)
        if value is not None and (isinstance(value, bool) or not isinstance(value, str | int)):
            raise self._wrong(key, "a phone number", value)
        return phone_e164(value, default_region=region or self.phone_region)

    def email(self, *keys: str) -> str | None:
        """An email address, or None when the value cannot be one."""
        return email_address(self.text(*keys))

    def enum(self, *keys: str, mapping: Mapping[str, E], default: E) -> E:
        """The member ``mapping`` gives the field's text (lower-cased), ``default`` when none does."""
        value = self.text(*keys)
        return default if value is None else mapping.get(value.strip().lower(), default)

    @overload
    def nested(self, *keys: str, required: Literal[True]) -> Payload: ...
    @overload
    def nested(self, *keys: str, required: bool = ...) -> Payload | None: ...
    def nested(self, *keys: str, required: bool = False) -> Payload | None:
        """An object inside this one, as a Payload whose errors name its path."""
        key, value = self._first(keys, "object" if required else None)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self._wrong(key, "an object", value)
        return self._child(value, self.field(key))

    def nested_list(self, *keys: str) -> list[Payload]:
        """An array of objects, each a Payload named ``key[index]``; [] when absent."""
        key, value = self._first(keys)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._wrong(key, "an array", value)
        children = []
        for index, item in enumerate(value):
            path = f"{self.field(key)}[{index}]"
            if not isinstance(item, dict):
                raise PayloadError(f"expected an object, got {describe(item)}", field=path)
            children.append(self._child(item, path))
        return children

    def strings(self, *keys: str) -> list[str] | None:
        """An array of strings."""
        key, value = self._first(keys)
        if value is None:
            return None
        if not isinstance(value, list):
            raise self._wrong(key, "an array of strings", value)
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise PayloadError(
                    f"expected a string, got {describe(item)}", field=f"{self.field(key)}[{index}]"
                )
        return value

    def _child(self, value: Mapping[str, Any], path: str) -> Payload:
        return Payload(
            value,
            path=path,
            naive_tz=self.naive_tz,
            phone_region=self.phone_region,
            text_values=self.text_values,
        )


_BOOLEANS = {"true": True, "false": False}
