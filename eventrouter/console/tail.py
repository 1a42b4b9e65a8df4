"""The events list's live tail: new events as server-sent events (``GET /events/stream``).

The stream polls the store once a second for the newest page, so it works the same next to
``eventrouter serve`` and in a standalone console beside Redis workers, and costs ingest one
small read a second per open tab, whatever the traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta

from aiohttp import web

from eventrouter.console import data
from eventrouter.console.keys import REDACTOR, STORE
from eventrouter.errors import StoreUnavailable
from eventrouter.query import QueryError

__all__ = ["close_streams", "install"]

#: seconds between two looks at the store
POLL_INTERVAL = 1.0
#: a comment line this often keeps proxies from closing an idle stream
KEEPALIVE = 15.0

#: how far before the newest event seen the next look starts
OVERLAP = timedelta(seconds=5)

_STOP = web.AppKey("console_tail_stop", asyncio.Event)


async def stream(request: web.Request) -> web.StreamResponse:
    """``text/event-stream``: one ``data:`` line per new event (the list's JSON summary)."""
    # the newest page of the list's filters: a cursor would pin the stream to older events
    query = {name: value for name, value in request.query.items() if name != "cursor"}
    app = request.app
    stop = app[_STOP]
    try:
        page = await data.events_page(app[STORE], query, app[REDACTOR])
    except QueryError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    seen = {event["id"] for event in page["events"]}
    # later looks ask only for what arrived since the newest event seen: a range of the
    # received-time index, cheap whatever the other filters (free text included) cost
    newest = page["events"][0]["received_at"] if page["events"] else None
    since = _later(query.get("since"), _since(newest) if newest else None)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    await response.write(b": tail started\n\n")
    quiet = 0.0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(POLL_INTERVAL):
                await stop.wait()
        try:
            page = await data.events_page(app[STORE], {**query, "since": since}, app[REDACTOR])
        except StoreUnavailable:
            continue  # the page says nothing new until the store answers again
        fresh = [event for event in page["events"] if event["id"] not in seen]
        seen.update(event["id"] for event in fresh)
        if fresh:
            since = _later(since, _since(fresh[0]["received_at"]))
        quiet += POLL_INTERVAL
        try:
            for event in reversed(fresh):  # oldest first: the page prepends each
                await response.write(f"data: {json.dumps(event)}\n\n".encode())
                quiet = 0.0
            if quiet >= KEEPALIVE:
                await response.write(b": still here\n\n")
                quiet = 0.0
        except (ConnectionResetError, RuntimeError):
            break  # the tab was closed
        if len(seen) > 10_000:  # ``since`` keeps the older ones out anyway
            seen = {event["id"] for event in page["events"]}
    return response


def _later(first: str | None, second: str | None) -> str:
    """The later of two ISO times (a time without a zone is UTC, as the filter reads it)."""
    moments = [
        moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        for moment in (datetime.fromisoformat(text) for text in (first, second) if text)
    ]
    return max(moments).isoformat() if moments else ""


def _since(newest: str) -> str:
    """Where the next look starts: a little before the newest event seen, since events are
    stored in an order that may differ by a few milliseconds from their received times (the
    ids already shown keep the overlap out)."""
    return (datetime.fromisoformat(newest) - OVERLAP).isoformat()


def install(app: web.Application) -> None:
    """The stream's route and its shutdown signal."""
    app[_STOP] = asyncio.Event()
    app.router.add_get("/events/stream", stream)
    app.on_shutdown.append(close_streams)


async def close_streams(app: web.Application) -> None:
    """On shutdown: end every open stream, so the listener need not wait for them."""
    app[_STOP].set()
