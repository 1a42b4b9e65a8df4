"""Attempt history end to end: the http sink reports the status and the start of the answer
through its error, the dispatcher masks and bounds them, and the store keeps every attempt."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from eventrouter import query
from eventrouter.errors import EXCERPT_LIMIT
from eventrouter.store import AttemptOutcome, Trigger
from tests.conftest import WHSEC

SINK_TOKEN = "sk_live_9f8e7d6c5b4a39281706"


async def test_each_attempt_keeps_its_status_and_a_masked_bounded_excerpt(
    make_router, config_with, aiohttp_server
):
    answers = []

    async def endpoint(request: web.Request) -> web.Response:
        answers.append(request.headers.get("Authorization"))
        if len(answers) == 1:
            # the endpoint echoes credentials (the sink's own and the source's) in a long answer
            body = f"busy; you sent {request.headers['Authorization']} and {WHSEC} " + "x" * 5000
            return web.Response(status=503, text=body)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", endpoint)
    server = await aiohttp_server(app, host="127.0.0.1")
    router = await make_router(
        config_with(
            {
                "fwd": {
                    "plugin": "http",
                    "url": f"http://127.0.0.1:{server.port}/hook",
                    "headers": {"Authorization": f"Bearer {SINK_TOKEN}"},
                    "delivery": {"retry_schedule": ["50ms"], "jitter": 0},
                }
            }
        )
    )
    _, body = await router.post("demo", {"type": "x"})
    event_id = body["event_id"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = await query.event_with_attempts(router.store, event_id)
        if found and len(found[1]) == 2:
            break
        await asyncio.sleep(0.05)
    assert found is not None
    failed, done = found[1]
    assert (failed.number, failed.outcome, failed.trigger, failed.status) == (
        1,
        AttemptOutcome.RETRY,
        Trigger.FIRST,
        503,
    )
    assert failed.error is not None
    assert failed.error.startswith("HTTP 503: busy; you sent")
    assert failed.response_excerpt is not None
    assert failed.response_excerpt.startswith("busy; you sent")
    assert len(failed.response_excerpt) <= EXCERPT_LIMIT
    for text in (failed.error, failed.response_excerpt):
        assert SINK_TOKEN not in text
        assert WHSEC not in text
    assert failed.duration >= 0
    assert (done.number, done.outcome, done.trigger, done.status) == (
        2,
        AttemptOutcome.DONE,
        Trigger.RETRY,
        None,
    )
    assert done.started_at >= failed.started_at
