"""``[server] delivery_processes``: ``serve`` receives, ``eventrouter worker`` children deliver.

Real processes on one SQLite store: the children deliver what ``serve`` accepts, one that dies is
started again, they stop with ``serve`` (SIGTERM) and without it (``serve`` SIGKILLed).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import pytest

from tests.processes import (
    EventRouterProcess,
    alive,
    children_of,
    signed_requests,
    wait_until,
    write_demo_config,
)

pytestmark = pytest.mark.slow

EVENTS = 40


def write_config(directory: Path, *, processes: int | str = 1, extra: str = "") -> Path:
    return write_demo_config(
        directory,
        """
[sinks.archive]
plugin = "csv"
directory = "archive"

[[routes]]
sinks = ["archive"]
""",
        server=f'delivery_processes = {processes}\nshutdown_timeout = "5s"\n{extra}',
    )


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as answer:  # noqa: S310 - loopback
        text = answer.read().decode()
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    assert found is not None, f"{name} not in /metrics"
    return float(found.group(1))


def archived_rows(directory: Path) -> int:
    return sum(
        len(path.read_text().splitlines()) - 1 for path in (directory / "archive").rglob("*.csv")
    )


async def send(url: str, count: int, tag: str) -> None:
    async with aiohttp.ClientSession() as session:
        for body, headers in signed_requests(count, tag=tag):
            async with session.post(f"{url}/hooks/demo", data=body, headers=headers) as answer:
                assert answer.status == 200, await answer.text()


async def serve_with_children(
    config: Path, count: int, *, args: Sequence[str] = ()
) -> tuple[EventRouterProcess, list[int]]:
    """``serve`` started on ``config``, once it has ``count`` children: it and their pids."""
    serve = EventRouterProcess(config=config, args=args).start()
    assert serve.process is not None
    pid = serve.process.pid
    try:
        await wait_until(
            lambda: len(children_of(pid)) == count, timeout=10, what=f"{count} children"
        )
    except BaseException:
        serve.stop()
        raise
    return serve, children_of(pid)


async def test_delivery_processes_deliver_restart_and_stop_with_serve(tmp_path: Path) -> None:
    serve, (child,) = await serve_with_children(write_config(tmp_path), 1)
    try:
        assert serve.process is not None
        assert metric(serve.url, "eventrouter_delivery_processes") == 1

        # serve does not deliver itself: every row comes from the child
        await send(serve.url, EVENTS, "first")
        await wait_until(
            lambda: archived_rows(tmp_path) == EVENTS, timeout=15, what="the child's deliveries"
        )
        assert "delivering only" in serve.logs()

        # a child that dies is started again, and delivers what came meanwhile
        os.kill(child, signal.SIGKILL)
        await send(serve.url, EVENTS, "second")
        await wait_until(
            lambda: metric(serve.url, "eventrouter_delivery_process_restarts_total") == 1,
            timeout=10,
            what="the restart",
        )
        await wait_until(
            lambda: [p for p in children_of(serve.process.pid) if p != child],
            timeout=10,
            what="a new child",
        )
        (second,) = children_of(serve.process.pid)
        await wait_until(
            lambda: archived_rows(tmp_path) == 2 * EVENTS, timeout=20, what="the new child's work"
        )
        assert f"delivery process 1 (pid {child}) exited on SIGKILL" in serve.logs()

        # SIGTERM: serve stops its children, then itself, cleanly
        serve.signal(signal.SIGTERM)
        assert await asyncio.to_thread(serve.wait, timeout=30) == 0
        assert not alive(second)
    finally:
        serve.stop()
    assert "stopping 1 delivery process" in serve.logs()


async def test_a_child_stops_by_itself_when_serve_is_killed(tmp_path: Path) -> None:
    serve, (child,) = await serve_with_children(write_config(tmp_path), 1)
    try:
        serve.signal(signal.SIGKILL)
        assert await asyncio.to_thread(serve.wait, timeout=10) == -signal.SIGKILL
        # it notices within a second that serve is gone, and stops as on SIGTERM
        await wait_until(lambda: not alive(child), timeout=15, what="the orphan to stop")
    finally:
        serve.stop()
    assert "the serve process (pid" in serve.logs()


async def test_the_command_line_overrides_the_config_and_no_deliver_starts_none(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, processes=0)
    serve, _ = await serve_with_children(config, 2, args=["--delivery-processes", "2"])
    try:
        assert "delivering in 2 processes of its own" in serve.logs()
    finally:
        serve.stop()
    assert serve.wait(timeout=5) == 0

    ingest_only = EventRouterProcess(config=write_config(tmp_path, processes=2))
    ingest_only.args = ["--no-deliver"]
    ingest_only.start()
    try:
        assert ingest_only.process is not None
        await asyncio.sleep(0.5)  # children would have been started before /healthz answered
        assert children_of(ingest_only.process.pid) == []
        assert "receiving only" in ingest_only.logs()
    finally:
        ingest_only.stop()


@pytest.mark.parametrize(
    ("processes", "extra", "message"),
    [
        ("-1", "", "server.delivery_processes"),
        ("1", "delivery_port = 70000\n", "server.delivery_port"),
    ],
)
def test_bad_settings_name_their_key(
    tmp_path: Path, processes: str, extra: str, message: str
) -> None:
    config = write_config(tmp_path, processes=processes, extra=extra)
    done = subprocess.run(
        [sys.executable, "-m", "eventrouter", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode != 0
    assert message in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


async def test_a_stop_signal_to_every_process_at_once_restarts_nothing(tmp_path: Path) -> None:
    # what systemd does by default (KillMode=control-group): SIGTERM to serve and its children
    serve, children = await serve_with_children(write_config(tmp_path, processes=2), 2)
    try:
        serve.signal(signal.SIGTERM)
        for child in children:
            os.kill(child, signal.SIGTERM)
        assert await asyncio.to_thread(serve.wait, timeout=30) == 0
        assert not any(alive(child) for child in children)
    finally:
        serve.stop()
    assert "starting it again" not in serve.logs()
