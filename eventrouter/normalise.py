"""Helpers source plugins share to turn provider values into the normalised vocabulary."""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from eventrouter import fastjson
from eventrouter.errors import PayloadError

__all__ = [
    "any_digest_matches",
    "email_address",
    "first",
    "json_object",
    "nesting_exceeds",
    "optional_str",
    "parse_timestamp",
    "phone_e164",
    "time_zone",
]


def phone_e164(value: Any, *, default_region: str | None = None) -> str | None:
    """``value`` as an E.164 number (``+919876543210``), or None when it is not a phone number.

    Numbers without a leading ``+`` are read in ``default_region`` (ISO 3166 code, e.g. ``IN``);
    placeholder numbers providers put in examples (``+000000000000``) give None.
    """
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
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


def parse_timestamp(
    value: Any, *, field: str, naive_tz: tzinfo = UTC, required: bool = False
) -> datetime | None:
    """A timezone-aware datetime from ISO 8601 (``Z`` or offset), ``YYYY-MM-DD HH:MM:SS`` or Unix seconds.

    A timestamp without an offset is taken in ``naive_tz``. Anything else is a PayloadError
    naming ``field``.
    """
    if value is None or value == "":
        if required:
            raise PayloadError("required timestamp is missing", field=field)
        return None
    if isinstance(value, bool):
        raise PayloadError(f"expected a timestamp, got {value!r}", field=field)
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise PayloadError(f"Unix timestamp {value!r} is out of range", field=field) from None
    if not isinstance(value, str):
        raise PayloadError(f"expected a timestamp, got {type(value).__name__}", field=field)
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        result = datetime.fromisoformat(text)
    except ValueError:
        raise PayloadError(f"{value!r} is not an ISO 8601 timestamp", field=field) from None
    if result.tzinfo is None:
        result = result.replace(tzinfo=naive_tz)
    try:
        result.astimezone(UTC)
    except (OverflowError, ValueError):
        raise PayloadError(f"{value!r} is out of range", field=field) from None
    return result


def optional_str(value: Any) -> str | None:
    """``value`` as a string, None for None and empty strings (ids may arrive as numbers)."""
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value)
    return text if text else None


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
    """True when lists and objects in ``value`` nest deeper than ``limit`` (no recursion)."""
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


def any_digest_matches(expected: Iterable[bytes], given: bytes) -> bool:
    """True when ``given`` equals one of ``expected``; every comparison is constant-time."""
    matched = False
    for candidate in expected:
        matched |= hmac.compare_digest(candidate, given)
    return matched


def first(mapping: Mapping[str, Any], *keys: str) -> Any:
    """The value of the first of ``keys`` present (and not None) in ``mapping``."""
    for key in keys:
        value = mapping.get(key)
        if value is not None:
            return value
    return None
