"""JSON on the ingest path: orjson wherever its answer is the standard library's, ``json`` elsewhere.

orjson reads and writes JSON several times faster than :mod:`json` (on ingest, serialising the
event for the store was the largest single cost of eventrouter's own). It differs from ``json``
at a few edges, and those are left to ``json``, so that what is accepted, what is stored and
every error message stay exactly what they were:

- **reading**, orjson turns an integer beyond 64 bits into a float, losing digits: a document
  holding a run of 19 or more digits is read by the fallback. Whatever orjson refuses (NaN, a
  byte order mark, a lone surrogate escape, invalid UTF-8, deep nesting) goes to the fallback
  too, which accepts it or explains the refusal in its own words;
- **writing**, orjson turns NaN and Infinity into ``null``: :meth:`Event.to_json
  <eventrouter.events.Event.to_json>` looks for them first and refuses them, so they never get
  here. What orjson refuses to write (an integer beyond 64 bits, a lone surrogate, a key that is
  not a string, a float subclass, nesting past 254 levels) is written, or refused, by the fallback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["dumps", "loads"]

#: the shortest integers orjson reads as floats are 19 digits long (below -2**63)
_LONG_NUMBER = b"0" * 19
#: every ASCII digit to ``0``, every other byte to a space: a run of digits becomes a run of
#: zeros, found by a substring search (a tenth of the cost of the regex ``[0-9]{19}``, which
#: tries a match at every position of the document)
_DIGITS = bytes(ord("0") if ord("0") <= byte <= ord("9") else ord(" ") for byte in range(256))


def _has_long_number(data: bytes | str) -> bool:
    """True when ``data`` holds a run of 19 or more ASCII digits (anywhere: numbers, strings)."""
    if isinstance(data, str):
        # UTF-8 encodes only ASCII digits with bytes 0x30-0x39; surrogatepass encodes a lone
        # surrogate (json reads one in a str) instead of failing on it
        data = data.encode("utf-8", "surrogatepass")
    return _LONG_NUMBER in data.translate(_DIGITS)


def loads(data: bytes | str, fallback: Callable[[Any], Any]) -> Any:
    """What ``fallback(data)`` returns for a JSON document, computed by orjson when it agrees."""
    if not _has_long_number(data):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # the fallback accepts it after all, or says what is wrong in its own words
    return fallback(data)


def dumps(value: Any, fallback: Callable[[Any], str]) -> str:
    """Compact JSON text for ``value`` (UTF-8, nothing escaped that need not be), as
    ``fallback(value)`` would write it. ``value`` must hold no NaN or Infinity."""
    try:
        return orjson.dumps(value).decode("utf-8")
    except orjson.JSONEncodeError:
        return fallback(value)
