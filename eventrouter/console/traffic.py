"""The overview's recent traffic: the request counters sampled once a minute, kept for a day.

Prometheus counters only grow; the overview wants "the last hour" and "the last day" and a
per-minute chart, so the console keeps a minute-by-minute copy of the counters (24 h of them,
a few hundred kilobytes) and subtracts. Only where the console runs inside the process that
receives webhooks: elsewhere those counters are that process's ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator

from aiohttp import web
from attrs import define, field

from eventrouter.metrics import Metrics

__all__ = ["TRAFFIC", "Traffic", "install"]

#: seconds between two samples
INTERVAL = 60.0
#: samples kept: one day
KEEP = 24 * 60 + 1

Counts = dict[tuple[str, str], float]


def _read(metrics: Metrics) -> Counts:
    """The request counter's value per (source, outcome) now."""
    counts: Counts = {}
    for family in metrics.requests.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                counts[(sample.labels["source"], sample.labels["outcome"])] = sample.value
    return counts


@define
class Traffic:
    """Samples of the request counters, oldest first, each with its monotonic time."""

    metrics: Metrics
    samples: deque[tuple[float, Counts]] = field(factory=lambda: deque(maxlen=KEEP))

    def sample(self, now: float | None = None) -> None:
        self.samples.append((time.monotonic() if now is None else now, _read(self.metrics)))

    def _at(self, moment: float) -> Counts:
        """The newest sample taken at or before ``moment`` (the oldest one if none is)."""
        chosen: Counts = self.samples[0][1] if self.samples else {}
        for taken, counts in self.samples:
            if taken > moment:
                break
            chosen = counts
        return chosen

    def window(self, seconds: float, now: float | None = None) -> dict[str, dict[str, int]]:
        """Requests per source and outcome over the last ``seconds`` (or since the start)."""
        now = time.monotonic() if now is None else now
        current, before = _read(self.metrics), self._at(now - seconds)
        result: dict[str, dict[str, int]] = defaultdict(dict)
        for (source, outcome), value in current.items():
            delta = int(value - before.get((source, outcome), 0))
            if delta:
                result[source][outcome] = delta
        return result

    def per_minute(self, minutes: int = 60, now: float | None = None) -> list[int]:
        """Accepted requests (all sources) in each of the last ``minutes`` minutes, oldest first."""
        now = time.monotonic() if now is None else now

        def accepted(counts: Counts) -> float:
            return sum(v for (_, outcome), v in counts.items() if outcome == "accepted")

        edges = [accepted(self._at(now - INTERVAL * back)) for back in range(minutes, 0, -1)]
        edges.append(accepted(_read(self.metrics)))
        return [max(0, int(later - earlier)) for earlier, later in itertools.pairwise(edges)]


TRAFFIC = web.AppKey("console_traffic", Traffic)


def install(app: web.Application, metrics: Metrics) -> None:
    """Sample ``metrics`` once a minute while ``app`` runs."""
    app[TRAFFIC] = Traffic(metrics)

    async def sampling(app: web.Application) -> AsyncIterator[None]:
        traffic = app[TRAFFIC]

        async def run() -> None:
            while True:
                traffic.sample()
                await asyncio.sleep(INTERVAL)

        task = asyncio.create_task(run(), name="eventrouter-console-traffic")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(sampling)
