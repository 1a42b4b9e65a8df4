"""A sink's ``rate_limit`` ("50/s", "3000/m"): deliveries started, evenly spaced, per sink.

The limiter is a GCRA (generic cell rate algorithm): one number per sink, the theoretical
arrival time of the next permit, so it fits a single Redis key shared by every worker (see
``store/lua/rate_permit.lua``) and a row of the SQLite store's ``sink_rates`` table, shared by
every process on the file (``serve`` and its delivery processes, ``eventrouter worker`` processes).
"""

from __future__ import annotations

import re
from typing import Any

from attrs import frozen

from eventrouter.converter import converter

__all__ = ["RateLimit", "gcra", "parse_rate_limit", "shared_gcra"]

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|m|h)\s*$")
_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}


@frozen
class RateLimit:
    """``count`` deliveries per ``period`` seconds."""

    count: float
    period: float

    @property
    def interval(self) -> float:
        """Seconds between two permits: 50/s gives one every 20 ms."""
        return self.period / self.count

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "m", 3600.0: "h"}[self.period]
        return f"{self.count:g}/{unit}"


def parse_rate_limit(value: Any) -> RateLimit:
    """``"50/s"``, ``"3000/m"`` or ``"100/h"``; a ValueError that says so otherwise."""
    match = _RATE.match(value) if isinstance(value, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(
            f"expected deliveries per second, minute or hour such as '50/s' or '3000/m', "
            f"got {value!r}"
        )
    return RateLimit(count=float(match.group(1)), period=_PERIODS[match.group(2)])


converter.register_structure_hook(RateLimit, lambda value, _: parse_rate_limit(value))
converter.register_unstructure_hook(RateLimit, str)


def gcra(tat: float, now: float, interval: float) -> tuple[float, float]:
    """One permit asked at ``now`` of a limiter whose next permit is due at ``tat``.

    Returns (new tat, seconds to wait): a wait of 0 grants the permit. One permit of slack
    (a tolerance of one interval) lets a waiter that wakes a little late keep the average rate.
    """
    base = max(tat, now)
    if base - now > interval:
        return tat, base - interval - now
    return base + interval, 0.0


def shared_gcra(tat: float, now: float, interval: float) -> tuple[float, float]:
    """:func:`gcra` on a wall clock that several processes read (``time.time()``).

    A granted permit leaves ``tat`` at most two intervals ahead of ``now``; one further ahead
    was written before the clock stepped back (NTP, a VM restored), and is brought back to two
    intervals, so a clock step never holds a sink for as long as the step.
    """
    return gcra(min(tat, now + 2 * interval), now, interval)
