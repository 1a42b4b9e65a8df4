"""bench/loadclient.py, the end-to-end benchmark's open-loop client: what it counts is what
the server answered, and nothing of its own pauses the run."""

from __future__ import annotations

import gc
import importlib.util
from pathlib import Path

from aiohttp import web

_PATH = Path(__file__).resolve().parent.parent / "bench" / "loadclient.py"


def _loadclient():
    spec = importlib.util.spec_from_file_location("loadclient", _PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_each_request_is_answered_and_the_collector_is_off_while_it_sends(aiohttp_server):
    loadclient = _loadclient()
    seen: list[tuple[bytes, bool]] = []

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append((body, gc.isenabled()))
        if body.endswith(b"3"):
            return web.json_response({"error": "nope"}, status=503)
        if body.endswith(b"5"):
            return web.Response(status=200, text="bye", headers={"Connection": "close"})
        return web.json_response({"status": "accepted"})

    app = web.Application()
    app.router.add_post("/hooks", handler)
    server = await aiohttp_server(app, host="127.0.0.1")
    requests = [(f"request {n}".encode(), {"Content-Type": "text/plain"}) for n in range(40)]

    assert gc.isenabled()
    latencies, lateness, failed = await loadclient.open_loop(
        str(server.make_url("/hooks")), requests, 400, connections=4, timeout=10
    )

    assert sorted(body for body, _ in seen) == sorted(body for body, _ in requests)
    assert failed == 4  # the 503s (3, 13, 23, 33); a closed connection is replaced, not failed
    assert len(latencies) == len(lateness) == 40
    assert all(0 <= latency < 10 for latency in latencies)
    assert not any(enabled for _, enabled in seen)  # no collection while the run went on
    assert gc.isenabled()  # and the collector is back after it
