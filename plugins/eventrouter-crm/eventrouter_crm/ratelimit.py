"""Stay under a CRM's request budget, and stop asking for a while when it says "too many"."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from eventrouter import RetryableError

__all__ = ["RateGate"]


class RateGate:
    """At most ``limit`` requests in any ``period`` seconds, and none while paused.

    ``pause(seconds)`` follows a 429: requests wait it out when it ends within ``max_wait``
    seconds, and fail at once with a RetryableError naming the rest of the pause otherwise
    (HubSpot's daily limit), so no request is sent that is sure to be refused.
    """

    def __init__(
        self,
        *,
        limit: int,
        period: float,
        max_wait: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.period = period
        self.max_wait = max_wait
        self._clock = clock
        self._sent: deque[float] = deque()
        self._paused_until = 0.0

    @property
    def paused_for(self) -> float:
        """Seconds left of the current pause (0 when not paused)."""
        return max(0.0, self._paused_until - self._clock())

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    async def acquire(self) -> None:
        """Wait for a slot in the window (and the end of a short pause), then take it."""
        while True:
            paused = self.paused_for
            if paused > self.max_wait:
                raise RetryableError(
                    f"rate limited: requests paused for {paused:.0f}s more", retry_after=paused
                )
            if paused > 0:
                await asyncio.sleep(paused)
                continue
            now = self._clock()
            while self._sent and self._sent[0] <= now - self.period:
                self._sent.popleft()
            if len(self._sent) < self.limit:
                self._sent.append(now)
                return
            await asyncio.sleep(self._sent[0] + self.period - now)
