"""One process of the shared-archive tests: a real csv sink, started in a process of its own.

``python archive_process.py append DIR PREFIX COUNT BATCH`` delivers COUNT events (ids
``PREFIX-00000``, ...; all received on 2024-12-19) in batches of BATCH through
``CSVSink.deliver_batch``; ``python archive_process.py housekeep DIR`` compresses closed days
again and again until its stdin is closed. Either prints ``ready`` once its sink has started,
then waits for a line on stdin (``go``) so that every process starts writing at once.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from eventrouter import Call, CallStatus, Contact, Event, EventData, EventType, SinkContext
from eventrouter.testing import structure_options
from eventrouter_csv import CSVOptions, CSVSink

RECEIVED = datetime(2024, 12, 19, 15, 0, 12, tzinfo=UTC)


def _event(event_id: str) -> Event:
    # a row of about 600 bytes: a batch spans several pages, as real batches do
    return Event(
        id=event_id,
        source="altur",
        provider="altur",
        type=EventType.CALL_ENDED,
        provider_type="on_call_end",
        idempotency_key=event_id,
        received_at=RECEIVED,
        time=RECEIVED,
        data=EventData(
            contact=Contact(phone="+521234567890", name="Sofía Pérez", external_id="user_12345"),
            call=Call(
                id=f"cll_{event_id}",
                status=CallStatus.COMPLETED,
                recording_url=f"https://api.altur.io/api/v1.0/call/{event_id}/recording",
            ),
            attributes={"note": "x" * 300},
        ),
    )


async def _wait_for_go() -> str:
    print("ready", flush=True)
    return await asyncio.to_thread(sys.stdin.readline)


async def main(mode: str, directory: str, *args: str) -> int:
    options = {"directory": directory}
    if mode == "housekeep":
        options["compress_after_days"] = 1
    sink = CSVSink("archive", structure_options(options, CSVOptions))
    async with aiohttp.ClientSession() as http:
        await sink.start(
            SinkContext(http=http, base_dir=Path.cwd(), logger=logging.getLogger("archive"))
        )
        try:
            if mode == "housekeep":
                await _wait_for_go()
                stop = asyncio.ensure_future(asyncio.to_thread(sys.stdin.readline))
                runs = 0
                while not stop.done():
                    await sink.housekeep()
                    runs += 1
                print(f"housekept {runs} times", flush=True)
                return 0
            prefix, count, batch = args[0], int(args[1]), int(args[2])
            events = [_event(f"{prefix}-{n:05d}") for n in range(count)]
            await _wait_for_go()
            for start in range(0, count, batch):
                refused = await sink.deliver_batch(events[start : start + batch])
                if refused:
                    print(f"refused: {refused}", flush=True)
                    return 1
            return 0
        finally:
            await sink.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:])))
