"""The project's own cattrs converter: events to and from JSON, config tables to attrs classes."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import cattrs
from cattrs.preconf.json import make_converter

__all__ = ["Duration", "converter", "parse_duration"]

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


def _make() -> cattrs.Converter:
    conv = make_converter(forbid_extra_keys=True)
    conv.register_structure_hook(Duration, lambda value, _: parse_duration(value))
    conv.register_unstructure_hook(Duration, float)
    conv.register_structure_hook(datetime, _structure_datetime)
    conv.register_unstructure_hook(datetime, lambda value: value.isoformat())
    return conv


converter: cattrs.Converter = _make()
"""Shared by events (JSON round trip) and configuration (unknown keys refused)."""
