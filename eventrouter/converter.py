"""The project's own cattrs converter: events to and from JSON, config tables to attrs classes."""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import Any

import cattrs
from cattrs.cols import homogenous_tuple_structure_factory, is_sequence, list_structure_factory
from cattrs.preconf.json import make_converter

__all__ = [
    "EMPTY_SECRET",
    "Duration",
    "Secret",
    "converter",
    "parse_duration",
    "parse_secret",
]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


class Duration(float):
    """Seconds, written in config as a number or as ``"500ms"``, ``"5s"``, ``"5m"``, ``"2h"``, ``"3d"``."""


def parse_duration(value: Any) -> Duration:
    """Read a duration from a number of seconds or a string with a unit."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 30 or '5m', got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value!r}")
        return Duration(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return Duration(float(match.group(1)) * _UNITS[match.group(2) or "s"])
    raise ValueError(
        f"expected a duration such as 30, '500ms', '5s', '5m', '2h' or '3d', got {value!r}"
    )


EMPTY_SECRET = "a secret cannot be empty (set its environment variable, or remove it)"  # noqa: S105
"""What ``eventrouter check`` says of an empty secret, whichever plugin's option it is."""


class Secret(str):
    """A credential in the config (HMAC key, token, password): never empty, never in a repr.

    Type an option ``Secret`` (or ``list[Secret]``) and the config loader refuses an empty or
    blank value (``${UNSET:-}`` included) with its path, and masks the value in logs.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret('***')"


def parse_secret(value: Any) -> Secret:
    """A :class:`Secret` from a config value; ValueError (never quoting it) unless a non-blank string."""
    if not isinstance(value, str):
        # not quoted: a number may be the secret itself
        raise ValueError(f"expected a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(EMPTY_SECRET)
    return Secret(value)


def _structure_datetime(value: Any, _: type) -> datetime:
    if isinstance(value, datetime):
        result = value
    elif isinstance(value, str):
        result = datetime.fromisoformat(value)
    else:
        raise ValueError(f"expected an ISO 8601 timestamp, got {value!r}")
    if result.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no time zone offset")
    return result


def _strict(expected: type, *, also: tuple[type, ...] = ()) -> Any:
    """A structure hook that refuses what Python would coerce (``"false"`` -> True, 1 -> "1")."""
    accepted = (expected, *also)

    def structure(value: Any, _: type) -> Any:
        if isinstance(value, bool) and expected is not bool:
            raise ValueError(f"expected {expected.__name__}, got a boolean")
        if not isinstance(value, accepted):
            raise ValueError(f"expected {expected.__name__}, got {type(value).__name__} {value!r}")
        return expected(value)

    return structure


def _enum(value: Any, type_: type[enum.Enum]) -> enum.Enum:
    try:
        return type_(value)
    except ValueError:
        allowed = ", ".join(repr(member.value) for member in type_)
        raise ValueError(f"expected one of {allowed}, got {value!r}") from None


def _sequence_hook(type_: Any, conv: cattrs.Converter) -> Any:
    """cattrs' own list / homogenous tuple hook, except that a string is not a sequence of characters."""
    if getattr(type_, "__origin__", type_) is tuple:
        base = homogenous_tuple_structure_factory(type_, conv)
    else:
        base = list_structure_factory(type_, conv)

    def structure(value: Any, target: Any) -> Any:
        if isinstance(value, str | bytes | dict):
            raise ValueError(f"expected a list, got {type(value).__name__} {value!r}")
        return base(value, target)

    return structure


def _is_list_like(type_: Any) -> bool:
    if not is_sequence(type_):
        return False
    return getattr(type_, "__origin__", type_) is not tuple or _is_homogenous(type_)


def _is_homogenous(type_: Any) -> bool:
    args: tuple[Any, ...] = getattr(type_, "__args__", ())
    return len(args) == 2 and args[1] is Ellipsis


def _make() -> cattrs.Converter:
    conv = make_converter(forbid_extra_keys=True)
    conv.register_structure_hook(bool, _strict(bool))
    conv.register_structure_hook(int, _strict(int))
    conv.register_structure_hook(float, _strict(float, also=(int,)))
    conv.register_structure_hook(str, _strict(str))
    # hooks dispatch on the class's MRO, where StrEnum meets str before Enum: name the enum
    # bases so vocabularies (CallStatus...) are structured as enums, not as plain strings
    for base in (enum.StrEnum, enum.IntEnum, enum.Enum):
        conv.register_structure_hook(base, _enum)
    conv.register_structure_hook_factory(_is_list_like, lambda type_: _sequence_hook(type_, conv))
    conv.register_structure_hook(Duration, lambda value, _: parse_duration(value))
    conv.register_unstructure_hook(Duration, float)
    conv.register_structure_hook(Secret, lambda value, _: parse_secret(value))
    conv.register_unstructure_hook(Secret, str)
    conv.register_structure_hook(datetime, _structure_datetime)
    conv.register_unstructure_hook(datetime, lambda value: value.isoformat())
    return conv


converter: cattrs.Converter = _make()
"""Shared by events (JSON round trip) and configuration (unknown keys refused)."""
