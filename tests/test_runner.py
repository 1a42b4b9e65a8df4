"""The pieces of a graceful stop (eventrouter.runner): what SIGTERM does to connections that
were already on their way when it arrived. ``tests/test_crash.py`` checks the whole of it on a
real process under a burst; these check each piece on its own. And a busy port fails ``serve``
before anything is delivered."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import pytest
from aiohttp import web

from eventrouter.config import ServerConfig
from eventrouter.connections import ConnectionGuard
from eventrouter.converter import Duration
from eventrouter.events import Event, EventData, utcnow
from eventrouter.loops import loop_factory, loop_name, run, uvloop_installed
from eventrouter.metrics import Metrics
from eventrouter.runner import YOUNG_COLLECTION_THRESHOLD, refuse_new_connections
from eventrouter.store.sqlite import SQLiteStore
from tests.processes import (
    EventRouterProcess,
    fire,
    signed_requests,
    wait_until,
    write_demo_config,
)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="socket filters")


def listener(family: int, host: str) -> socket.socket:
    sock = socket.socket(family)
    sock.bind((host, 0))
    sock.listen(16)
    return sock


@linux_only
@pytest.mark.parametrize(
    ("family", "bind", "target"),
    [
        (socket.AF_INET, "127.0.0.1", "127.0.0.1"),
        (socket.AF_INET6, "::1", "::1"),
    ],
)
def test_refused_listener_ignores_new_connections_and_keeps_queued_ones(family, bind, target):
    if family == socket.AF_INET6 and not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        sock = listener(family, bind)
    except OSError as exc:
        pytest.skip(f"cannot listen on {bind}: {exc}")
    port = sock.getsockname()[1]
    with sock:
        queued = socket.create_connection((target, port), timeout=2)
        queued.sendall(b"POST /hooks/demo HTTP/1.1\r\n" + b"x" * 5000)
        assert refuse_new_connections([sock])

        late = socket.socket(family)
        late.settimeout(0.3)
        with late, pytest.raises(TimeoutError):
            late.connect((target, port))  # its SYN is ignored: no connection, no reset

        # the connection that was queued before is still accepted, whole, and can be answered
        accepted, _ = sock.accept()
        with accepted, queued:
            accepted.settimeout(2)
            received = b""
            while len(received) < 5027:
                received += accepted.recv(65536)
            assert received.startswith(b"POST /hooks/demo")
            accepted.sendall(b"answered")
            assert queued.recv(16) == b"answered"
    # once closed, the retransmitted attempt finds the port closed: refused, which senders retry
    again = socket.socket(family)
    with again, pytest.raises(ConnectionRefusedError):
        again.connect((target, port))


@linux_only
def test_refused_listener_on_a_dual_stack_socket_handles_ipv4_mapped_attempts():
    try:
        sock = socket.socket(socket.AF_INET6)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", 0))
        sock.listen(4)
    except OSError as exc:
        pytest.skip(f"no dual-stack socket: {exc}")
    with sock:
        assert refuse_new_connections([sock])
        late = socket.socket(socket.AF_INET)
        late.settimeout(0.3)
        with late, pytest.raises(TimeoutError):
            late.connect(("127.0.0.1", sock.getsockname()[1]))


async def test_wait_for_headers_waits_for_accepted_connections_that_have_not_sent_them():
    app = web.Application()

    async def answer(request: web.Request) -> web.Response:
        return web.json_response({})

    app.router.add_post("/hooks/demo", answer)
    guard = ConnectionGuard(ServerConfig(header_timeout=Duration(5)), metrics=Metrics())
    app.middlewares.insert(0, guard.middleware)
    runner = web.AppRunner(app)
    await runner.setup()
    assert runner.server is not None
    guard.serve(runner.server)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(guard, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        # nothing accepted: nothing to wait for
        assert await guard.wait_for_headers(1) == 0

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await wait_until(lambda: guard.awaiting_headers, timeout=2, what="the connection")
        waiting = asyncio.create_task(guard.wait_for_headers(5))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # half the headers are not enough
        writer.write(b"POST /hooks/demo HTTP/1.1\r\nHost: x\r\n" + b"X-Large: " + b"a" * 5000)
        await writer.drain()
        await asyncio.sleep(0.05)
        assert not waiting.done()
        writer.write(b"\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        assert await asyncio.wait_for(waiting, 2) == 0
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")

        # a client that never sends its headers is waited for no longer than the grace
        _, silent = await asyncio.open_connection("127.0.0.1", port)
        await wait_until(lambda: guard.awaiting_headers, timeout=2, what="the silent connection")
        assert await guard.wait_for_headers(0.1) == 1
        silent.close()
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
        await runner.cleanup()


def test_serve_on_a_busy_port_fails_before_any_delivery_runs(tmp_path):
    """The port is bound before the app starts: no pending delivery is attempted first."""
    hits = socket.socket()
    hits.bind(("127.0.0.1", 0))
    hits.listen(8)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(8)
    config = write_demo_config(
        tmp_path,
        f"""
[sinks.out]
plugin = "http"
url = "http://127.0.0.1:{hits.getsockname()[1]}/hook"

[[routes]]
sinks = ["out"]
""",
    )

    async def seed() -> None:
        store = SQLiteStore(tmp_path / "eventrouter.db")
        await store.open()
        now = utcnow()
        pending = Event(
            id="evt_pending",
            source="demo",
            type="order.paid",
            time=now,
            provider="standard-webhooks",
            provider_type="order.paid",
            idempotency_key="msg_pending",
            received_at=now,
            data=EventData(),
            raw={},
        )
        await store.ingest(pending, ["out"])
        await store.close()

    asyncio.run(seed())
    with hits, busy:
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "eventrouter", "serve", f"--config={config}", f"--port={port}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0
        assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
        assert "change [server] port or pass --port" in result.stderr
        assert "Traceback" not in result.stderr
        hits.setblocking(False)
        with pytest.raises(BlockingIOError):  # nobody tried to deliver
            hits.accept()


def test_the_collector_is_set_up_for_a_server_once_its_app_has_started():
    # in a process of its own: the settings are the whole process's
    code = (
        "import gc; from eventrouter.runner import YOUNG_COLLECTION_THRESHOLD, tune_collector\n"
        "before = gc.get_threshold()\n"
        "tune_collector()\n"
        "after = gc.get_threshold()\n"
        "assert after == (YOUNG_COLLECTION_THRESHOLD, *before[1:]), (before, after)\n"
        "assert gc.get_freeze_count() > 1000, gc.get_freeze_count()\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "ok", done.stderr
    # room for several batches of 100 events in flight, each event with dozens of containers
    assert YOUNG_COLLECTION_THRESHOLD >= 100 * 100


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_sink_that_cannot_start_stops_the_server_with_a_message(tmp_path, command):
    """No traceback: the sink's table, what went wrong, where to look."""
    (tmp_path / "taken").write_text("a file, where the archive's directory should go")
    config = write_demo_config(
        tmp_path,
        """
[sinks.archive]
plugin = "csv"
directory = "taken/archive"

[[routes]]
sinks = ["archive"]
""",
    )
    result = subprocess.run(
        [sys.executable, "-m", "eventrouter", command, f"--config={config}", "--port=0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "sinks.archive: the csv sink cannot start: " in result.stderr
    assert "check [sinks.archive] in the configuration" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("setting", "loop"),
    [
        pytest.param(
            "",
            "uvloop",
            marks=pytest.mark.skipif(not uvloop_installed(), reason="uvloop is not installed"),
        ),
        ('event_loop = "asyncio"', "asyncio"),
    ],
)
def test_serve_runs_on_the_event_loop_the_config_names(tmp_path, setting, loop):
    """By default on uvloop where it is installed: the start-up line says which; webhooks are
    taken and SIGTERM stops it cleanly on either loop."""
    config = write_demo_config(tmp_path, server=setting)
    server = EventRouterProcess(config).start()
    try:
        burst = asyncio.run(
            fire(f"{server.url}/hooks/demo", signed_requests(20, tag=loop), concurrency=4)
        )
        assert burst.statuses == [200] * 20
    finally:
        server.signal()
        returncode = server.wait()
    logs = server.logs()
    assert returncode == 0, logs
    assert f"(sqlite store, {loop} event loop)" in logs
    assert "Traceback" not in logs


def test_the_loops_run_a_coroutine_and_say_which_they_are():
    async def which() -> str:
        return loop_name(asyncio.get_running_loop())

    assert run(which(), event_loop="asyncio") == "asyncio"
    assert loop_factory("asyncio") is asyncio.new_event_loop
    expected = "uvloop" if uvloop_installed() else "asyncio"
    assert run(which(), event_loop="auto") == expected
    with pytest.raises(ValueError, match="unknown event loop 'libuv'"):
        loop_factory("libuv")
