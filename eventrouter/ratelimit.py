"""A sink's ``rate_limit`` ("50/s", "3000/m"): deliveries started, evenly spaced, per sink.

The limiter is a GCRA (generic cell rate algorithm): one number per sink, the theoretical
arrival time of the next permit, so it fits a single Redis key shared by every worker (see
``store/lua/rate_permit.lua``); the SQLite store keeps it in the process (:class:`LocalRates`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from attrs import frozen

from eventrouter.converter import converter

__all__ = ["LocalRates", "RateLimit", "parse_rate_limit"]

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


class LocalRates:
    """The limiters of one process, by sink (the SQLite store's)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tat: dict[str, float] = {}

    def permit(self, sink: str, interval: float) -> float:
        """Take a permit (0 returned) or say how many seconds to wait before asking again."""
        tat, wait = gcra(self._tat.get(sink, 0.0), self._clock(), interval)
        self._tat[sink] = tat
        return wait
