"""What a drained delivery costs besides the sink: the dispatcher and the store, per event.

bench/endtoend.py times ``serve`` draining a backlog into the CSV sink; this script splits that
figure. In one process, on a fresh SQLite store of ``--events`` pending deliveries of the
end-to-end bench's event (the Altur ``on_call_end``, 2.4 KB stored) each time, it drains them
with the app's own dispatcher into:

- ``csv``: the CSV sink, as ``serve`` would (default delivery options);
- ``discard``: a sink that takes each batch and does nothing with it: what is left is claiming
  (with the event read back from its JSON), the attempt history, recording the outcomes, metrics
  and hooks;
- ``discard, events pre-read``: the same with each stored event read back before the clock
  starts, so that the claim hands out events already built: the dispatcher's and the store's own
  bookkeeping alone.

Each is run ``--rounds`` times, alternating, and the best round kept; the figure is the process's
CPU time (every thread) per delivery, so a busy machine weighs less than on a wall clock. A
drain at 20,000 events/s leaves 50 µs per event, everything included.

    python bench/drainfloor.py [--events 20000] [--rounds 3]

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import endtoend
import pluggy
from aiohttp.test_utils import TestServer

from eventrouter import Sink, hookimpl
from eventrouter.app import STORE, create_app
from eventrouter.config import load_config
from eventrouter.events import Event
from eventrouter.plugins import Registry, create_plugin_manager

KINDS = ("csv", "discard", "discard, events pre-read")


class DiscardSink(Sink):
    """Takes every batch and keeps nothing (what a delivery costs besides its sink)."""

    type_name = "discard"

    async def deliver(self, event: Event) -> None:
        return None

    async def deliver_batch(self, events: Sequence[Event]) -> None:
        return None


def plugin_manager() -> tuple[pluggy.PluginManager, Registry]:
    """The installed plugins and the ``discard`` sink type."""

    class Plugin:
        @hookimpl
        def register_sinks(self, register: Callable[[type[Sink]], None]) -> None:
            register(DiscardSink)

    pm = create_plugin_manager()
    pm.register(Plugin(), name="drainfloor-discard")
    return pm, Registry.collect(pm)


def write_config(directory: Path, kind: str) -> Path:
    path = endtoend.write_config(directory, 0, sink="csv")
    if kind != "csv":
        text = path.read_text()
        text = text.replace('plugin = "csv"\ndirectory = "archive"', 'plugin = "discard"')
        path.write_text(text)
    return path


@contextmanager
def stored_events_pre_read(path: Path) -> Iterator[None]:
    """Make the stores' reader hand out events read beforehand (the clock does not see it)."""
    with sqlite3.connect(path) as conn:
        ready = {
            body: Event.from_stored_json(body)
            for (body,) in conn.execute("SELECT body FROM events")
        }
    real = Event.from_stored_json
    Event.from_stored_json = staticmethod(ready.__getitem__)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        Event.from_stored_json = real  # type: ignore[method-assign]


async def drain(directory: Path, kind: str, count: int) -> float:
    """CPU seconds per delivery to drain ``count`` pending deliveries into ``kind``."""
    pm, registry = plugin_manager()
    config = load_config(write_config(directory, kind), registry)
    await endtoend.fill(config, count)
    pre_read = stored_events_pre_read(directory / "bench.db") if "pre-read" in kind else None
    with pre_read or _nothing():
        app = create_app(config, pm=pm)
        server = TestServer(app, host="127.0.0.1")
        cpu = time.process_time()
        await server.start_server()
        store = app[STORE]
        while await store.queue_depth():
            await asyncio.sleep(0.01)
        cpu = time.process_time() - cpu
        await server.close()
    return cpu / count


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="eventrouter-drainfloor-") as tmp:
        for round_ in range(args.rounds):
            for kind in KINDS:
                directory = Path(tmp) / f"{round_}-{kind.replace(',', '').replace(' ', '-')}"
                directory.mkdir()
                seconds = asyncio.run(drain(directory, kind, args.events))
                best[kind] = min(best.get(kind, seconds), seconds)
                print(f"  round {round_ + 1} {kind}: {seconds * 1e6:.1f} µs", file=sys.stderr)
    print(
        f"CPU per drained delivery, every thread (best of {args.rounds} rounds of"
        f" {args.events:,} events; 20,000 events/s leaves 50 µs)"
    )
    for kind in KINDS:
        print(f"  {kind:<30} {best[kind] * 1e6:8.1f} µs")


if __name__ == "__main__":
    main()
