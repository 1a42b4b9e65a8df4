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

CPU time on this shared machine still moves by a third between runs. ``--instructions`` counts
instead (valgrind's callgrind, every thread): each of ``csv`` and ``discard`` drains ``--small``
and then ``--large`` events in a process of its own, the store filled beforehand by another, and
the difference over the extra events is what one delivery costs, start-up cancelling out. It
moves by well under 1% between runs: the figure to compare a change with. About 3 minutes.

    python bench/drainfloor.py [--events 20000] [--rounds 3]
    python bench/drainfloor.py --instructions [--small 500] [--large 2500]

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sqlite3
import subprocess
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
from eventrouter.runner import tune_collector

KINDS = ("csv", "discard", "discard, events pre-read")
#: a drain that takes longer has gone wrong (a delivery failing again and again)
DRAIN_TIMEOUT = 300.0


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
        # keyed as the claim reads them: the stored bytes
        ready = {
            body: Event.from_stored_json(body)
            for (body,) in conn.execute("SELECT CAST(body AS BLOB) FROM events")
        }
    real = Event.from_stored_json
    Event.from_stored_json = staticmethod(ready.__getitem__)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        Event.from_stored_json = real  # type: ignore[method-assign]


async def drain(directory: Path, kind: str, count: int, *, fill: bool = True) -> float:
    """CPU seconds per delivery to drain ``count`` pending deliveries into ``kind`` (the store
    filled first unless ``fill`` is False: then it must hold them already)."""
    pm, registry = plugin_manager()
    config = load_config(write_config(directory, kind), registry)
    if fill:
        await endtoend.fill(config, count)
    pre_read = stored_events_pre_read(directory / "bench.db") if "pre-read" in kind else None
    with pre_read or _nothing():
        app = create_app(config, pm=pm)
        server = TestServer(app, host="127.0.0.1")
        tune_collector()  # as serve does once the app has started
        cpu = time.process_time()
        await server.start_server()
        store = app[STORE]
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while await store.queue_depth():
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"{kind}: {await store.queue_depth()} deliveries left after {DRAIN_TIMEOUT:g}s"
                )
            await asyncio.sleep(0.01)
        cpu = time.process_time() - cpu
        await server.close()
    return cpu / count


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def instructions(directory: Path, kind: str, count: int) -> int:
    """Instructions (every thread) of a process that drains ``count`` deliveries into ``kind``
    from a store filled beforehand."""
    _, registry = plugin_manager()
    config = load_config(write_config(directory, kind), registry)
    asyncio.run(endtoend.fill(config, count))
    out = directory / "callgrind.out"
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            __file__,
            "--drain-only",
            str(directory),
            kind,
            str(count),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    totals = re.search(
        r"^(?:summary|totals):\s+(\d+)", out.read_text() if out.exists() else "", re.M
    )
    if done.returncode or totals is None:
        raise SystemExit(f"{kind}, {count} events: the drain failed\n{done.stderr[-3000:]}")
    return int(totals.group(1))


def count_instructions(small: int, large: int) -> None:
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    kinds = KINDS[:2]  # reading the events beforehand would be counted too
    figures = {}
    with tempfile.TemporaryDirectory(prefix="eventrouter-drainfloor-") as tmp:
        for kind in kinds:
            counts = []
            for count in (small, large):
                directory = Path(tmp) / f"{kind}-{count}"
                directory.mkdir()
                counts.append(instructions(directory, kind, count))
                print(f"  {kind}, {count} events: {counts[-1]:,} instructions", file=sys.stderr)
            figures[kind] = (counts[1] - counts[0]) / (large - small)
    print(f"instructions per drained delivery (callgrind, every thread; {large} minus {small})")
    for kind in kinds:
        print(f"  {kind:<30} {figures[kind]:12,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--large", type=int, default=2500)
    parser.add_argument(
        "--drain-only", nargs=3, metavar=("DIR", "KIND", "COUNT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.drain_only:
        directory, kind, count = args.drain_only
        asyncio.run(drain(Path(directory), kind, int(count), fill=False))
        return
    if args.instructions:
        count_instructions(args.small, args.large)
        return
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
