"""Per-event CPU of a CSV delivery, step by step, before and after (µs per event, one run).

A delivery spends Python time that batching claims and acks cannot remove: reading the claimed
event back from its stored JSON, rendering its CSV row, encoding the record. This script times
each step on the bench's event (bench/endtoend.py's Altur ``on_call_end``, parsed by the altur
source: 2.4 KB of stored JSON, 37 default columns) with ``timeit``, and the same steps of the
code at ``--base`` (loaded from git into this process), alternating, best of ``--repeat`` rounds
each, so that a busy machine slows both alike; the time is the thread's CPU time. Also the JSON
reader on ingest-size bodies. render_row is also timed beside ``--render-base``'s (ad2eafc: a
getter and _cell per column, before the generated renderer), on the bench's event and on the
same event with its call's start before its end (the bench's body gives both one instant).

    python bench/perevent.py [--base 7201c30] [--render-base ad2eafc] [--number 2000] [--repeat 7]

``--base ""`` times the current code only. Prints a table; no assertion on timing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import timeit
import types
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import endtoend

from eventrouter import fastjson
from eventrouter.config import load_config
from eventrouter.converter import converter
from eventrouter.events import Event
from eventrouter.plugins import Registry, create_plugin_manager
from eventrouter.sources import WebhookRequest
from eventrouter_csv import columns

ROOT = Path(__file__).resolve().parent.parent
SMALL = ROOT / "plugins/eventrouter-altur/tests/fixtures/campaign_status_changed.json"
PELCRO = ROOT / "plugins/eventrouter-pelcro/tests/fixtures/campaign_triggered.json"
BATCH = 100


def old_module(base: str, path: str, name: str) -> Any:
    """The module at ``path`` as it was at commit ``base`` (its imports are today's)."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{base}:{path}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType(name)
    sys.modules[name] = module  # attrs and typing look classes' modules up by name
    exec(compile(source, f"{base}:{path}", "exec"), module.__dict__)  # noqa: S102 - our own file
    return module


def bench_event() -> Event:
    """The Altur on_call_end event the end-to-end bench sends, as the altur source makes it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = endtoend.write_config(Path(tmp), 9, sink="csv")
        config = load_config(path, Registry.collect(create_plugin_manager()))
    body = next(endtoend.bodies(1, "perevent"))
    return config.sources["bench"].parse(WebhookRequest(body=body))


def pelcro_event() -> Event:
    """A Pelcro campaign.triggered event: its magic-link token is a credential (``sensitive``),
    as the core hands it to a sink (redacted)."""
    from eventrouter_pelcro import PelcroOptions, PelcroSource
    from eventrouter_pelcro.signature import SIGNATURE_HEADER, sign

    body = PELCRO.read_bytes()
    source = PelcroSource("pelcro", PelcroOptions(secrets=["perevent"]))
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, "perevent")}
    return source.parse(WebhookRequest(body=body, headers=headers)).redacted()


def best(function: Callable[[], object], number: int) -> float:
    """µs of CPU per call in one round of ``number`` calls (this thread's CPU time, not the
    wall clock: time spent waiting for a core the other processes hold is not counted)."""
    return timeit.Timer(function, timer=time.thread_time).timeit(number) / number * 1e6


def compare(
    steps: list[tuple[str, Callable[[], object] | None, Callable[[], object]]],
    *,
    number: int,
    repeat: int,
) -> list[tuple[str, float | None, float]]:
    """For each step, the best round of the old and the new callable, rounds alternating."""
    results = []
    for name, old, new in steps:
        before, after = float("inf"), float("inf")
        for _ in range(repeat):
            if old is not None:
                before = min(before, best(old, number))
            after = min(after, best(new, number))
        results.append((name, None if old is None else before, after))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", default="7201c30", help="the commit to compare with")
    parser.add_argument(
        "--render-base",
        default="ad2eafc",
        help="the commit whose render_row the generated one is compared with (the loop)",
    )
    parser.add_argument("--number", type=int, default=2000, help="calls per round")
    parser.add_argument("--repeat", type=int, default=7, help="rounds per step and version")
    args = parser.parse_args()

    event = columns.archive_view(bench_event())
    stored = event.to_json()
    ingest_body = next(endtoend.bodies(1, "ingest"))
    small_body = SMALL.read_bytes()
    sensitive = pelcro_event()
    names = columns.DEFAULT_COLUMNS
    cells = columns.render_row(event, names)
    batch = [cells] * BATCH

    # the Altur call.ended of a real call: its start before its end, its time the end (the
    # bench's body has one instant for all three, and equal times are formatted once)
    call = event.data.call
    started = call.ended_at - timedelta(seconds=45)
    call_ended = event.evolve(
        data=attrs.evolve(event.data, call=attrs.evolve(call, started_at=started))
    )

    old_json = old_columns = render_columns = None
    if args.render_base:
        render_columns = old_module(
            args.render_base,
            "plugins/eventrouter-csv/eventrouter_csv/columns.py",
            "_render_base_columns",
        )
    if args.base:
        old_json = old_module(args.base, "eventrouter/fastjson.py", "_base_fastjson")
        old_columns = old_module(
            args.base, "plugins/eventrouter-csv/eventrouter_csv/columns.py", "_base_columns"
        )

    def old(make: Callable[[Any], Callable[[], object]], module: Any) -> Any:
        return None if module is None else make(module)

    def old_delivery(json_module: Any, columns_module: Any) -> Callable[[], object]:
        def deliver() -> object:
            # Event.from_json at the base: its JSON reader, then the strict converter
            claimed = converter.structure(json_module.loads(stored, json.loads), Event)
            view = columns_module.archive_view(claimed)
            return columns_module.encode_row(columns_module.render_row(view, names))

        return deliver

    def delivery() -> object:
        view = columns.archive_view(Event.from_stored_json(stored))
        return columns.encode_row(columns.render_row(view, names))

    def loads(module: Any, body: bytes | str) -> Callable[[], object]:
        return lambda: module.loads(body, json.loads)

    steps: list[tuple[str, Callable[[], object] | None, Callable[[], object]]] = [
        (
            f"JSON reader, ingest body ({len(ingest_body):,} B)",
            old(lambda m: loads(m, ingest_body), old_json),
            loads(fastjson, ingest_body),
        ),
        (
            f"JSON reader, small body ({len(small_body):,} B)",
            old(lambda m: loads(m, small_body), old_json),
            loads(fastjson, small_body),
        ),
        (
            f"JSON reader, stored event ({len(stored):,} chars)",
            old(lambda m: loads(m, stored), old_json),
            loads(fastjson, stored),
        ),
        (
            "event from stored JSON (was Event.from_json)",
            old(
                lambda m: lambda: converter.structure(m.loads(stored, json.loads), Event),
                old_json,
            ),
            lambda: Event.from_stored_json(stored),
        ),
        (
            "  Event.from_json (strict, for others' JSON)",
            old(
                lambda m: lambda: converter.structure(m.loads(stored, json.loads), Event),
                old_json,
            ),
            lambda: Event.from_json(stored),
        ),
        (
            "archive_view, Pelcro event with a credential",
            old(lambda m: lambda: m.archive_view(sensitive), old_columns),
            lambda: columns.archive_view(sensitive),
        ),
        (
            f"render_row ({len(names)} columns)",
            old(lambda m: lambda: m.render_row(event, names), old_columns),
            lambda: columns.render_row(event, names),
        ),
        (
            f"  beside {args.render_base or 'nothing'} (the loop)",
            old(lambda m: lambda: m.render_row(event, names), render_columns),
            lambda: columns.render_row(event, names),
        ),
        (
            f"  a call's start before its end, beside {args.render_base or 'nothing'}",
            old(lambda m: lambda: m.render_row(call_ended, names), render_columns),
            lambda: columns.render_row(call_ended, names),
        ),
        (
            "encode_row",
            old(lambda m: lambda: m.encode_row(cells), old_columns),
            lambda: columns.encode_row(cells),
        ),
        (
            f"encode_rows, per record (batch of {BATCH})",
            old(lambda m: lambda: [m.encode_row(row) for row in batch], old_columns),
            lambda: columns.encode_rows(batch),
        ),
        (
            "delivery: event, archive view, row, record",
            None if old_json is None else old_delivery(old_json, old_columns),
            delivery,
        ),
    ]
    results = compare(steps, number=args.number, repeat=args.repeat)

    print(
        f"per-event CPU, µs (thread CPU time, best of {args.repeat} rounds of {args.number} calls;"
        f" before = {args.base or 'not measured'})"
    )
    print(f"{'step':<48}{'before':>9}{'after':>9}{'ratio':>8}")
    for name, before, after in results:
        if name.startswith("encode_rows"):  # the batch is timed whole: per record
            before = None if before is None else before / BATCH
            after /= BATCH
        if before is None:
            print(f"{name:<48}{'':>9}{after:>9.2f}")
        else:
            print(f"{name:<48}{before:>9.2f}{after:>9.2f}{before / after:>7.1f}x")


if __name__ == "__main__":
    main()
