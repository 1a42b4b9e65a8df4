"""Delivery in processes of its own: ``serve`` starts ``eventrouter worker`` children and keeps them.

One process on the event loop's one thread both receives webhooks and delivers them; under load
the two share a core. With ``[server] delivery_processes = N``, ``serve`` receives only and runs
N ``eventrouter worker`` processes beside it on the same config and store (the store's claims
and leases already let several processes deliver together), so ingest and delivery each get a
core. :class:`DeliveryProcesses` is the supervisor, as gunicorn's arbiter is for its workers:

- it starts the children once the app has started, and logs each one's pid;
- a child that exits while ``serve`` runs (a crash, an out-of-memory kill, an operator's signal)
  is started again, after a pause that doubles while children keep dying young (up to
  ``RESTART_BACKOFF[1]``), so a child that cannot start does not spin;
- on shutdown (after ``serve`` has stopped receiving and answered what it accepted) it sends
  each child SIGTERM, the worker's own graceful stop (running attempts finish, up to
  ``shutdown_timeout``), and SIGKILLs one that is still there after that and ``KILL_MARGIN``;
- each child runs in a session of its own, so a Ctrl-C in a terminal reaches ``serve`` alone,
  which stops them in that order; and each child watches ``serve`` (``--parent``): if ``serve``
  is gone without stopping it (SIGKILL), the child stops itself gracefully within a second
  (see :func:`exit_with_parent`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from aiohttp import web

from eventrouter.metrics import Metrics

__all__ = [
    "EXIT_SETTLE",
    "KILL_MARGIN",
    "PARENT_CHECK_INTERVAL",
    "RESTART_BACKOFF",
    "DeliveryProcesses",
    "exit_with_parent",
    "worker_command",
]

log = logging.getLogger("eventrouter.supervisor")

#: seconds before a child that exited is started again: the first pause, and the longest
RESTART_BACKOFF = (1.0, 30.0)
#: a child that ran at least this long died of something else than failing to start: the next
#: restart pauses RESTART_BACKOFF[0] again
HEALTHY_RUN = 60.0
#: seconds a child gets beyond ``shutdown_timeout`` to exit on SIGTERM before it is killed
KILL_MARGIN = 10.0
#: seconds between a child's looks at whether ``serve`` is still its parent
PARENT_CHECK_INTERVAL = 1.0
#: seconds a child's exit waits before it is judged: a stop signal to the whole service
#: (systemd's KillMode=control-group) reaches serve and its children at once, and the event loop
#: may hear of a child's exit before it runs serve's own signal handler
EXIT_SETTLE = 0.5


class DeliveryProcesses:
    """``count`` ``eventrouter worker`` children of this process, kept running until :meth:`stop`."""

    def __init__(
        self,
        command: Callable[[int], Sequence[str]],
        *,
        count: int,
        grace: float,
        metrics: Metrics,
    ) -> None:
        #: the command line of child ``number`` (1-based)
        self.command = command
        self.count = count
        #: seconds a child may take to stop on SIGTERM before it is killed
        self.grace = grace
        self.metrics = metrics
        self.processes: dict[int, asyncio.subprocess.Process] = {}
        self._keepers: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self) -> None:
        for number in range(1, self.count + 1):
            await self._spawn(number)
            self._keepers.append(
                asyncio.create_task(self._keep(number), name=f"delivery-process-{number}")
            )

    async def _spawn(self, number: int) -> None:
        process = await asyncio.create_subprocess_exec(
            *self.command(number), stdin=asyncio.subprocess.DEVNULL, start_new_session=True
        )
        self.processes[number] = process
        self.metrics.delivery_processes.inc()
        log.info("delivery process %d started (pid %d)", number, process.pid)

    async def _keep(self, number: int) -> None:
        """Start child ``number`` again whenever it exits, until the supervisor stops."""
        pause = RESTART_BACKOFF[0]
        while True:
            process = self.processes[number]
            started = time.monotonic()
            code = await process.wait()
            self.metrics.delivery_processes.dec()
            ran = time.monotonic() - started
            if await self._stopped_after(EXIT_SETTLE):
                return
            if ran >= HEALTHY_RUN:
                pause = RESTART_BACKOFF[0]
            log.warning(
                "delivery process %d (pid %d) exited %s after %.0fs; starting it again in %.0fs",
                number,
                process.pid,
                _exit_status(code),
                ran,
                pause,
            )
            self.metrics.delivery_process_restarts.inc()
            if await self._stopped_after(pause):
                return
            pause = min(pause * 2, RESTART_BACKOFF[1])
            await self._spawn(number)

    async def _stopped_after(self, seconds: float) -> bool:
        """Whether the supervisor is stopping, now or ``seconds`` later."""
        if not self._stopping:
            await asyncio.sleep(seconds)
        return self._stopping

    def stopping(self) -> None:
        """``serve`` is shutting down: a child that exits from now on is not started again
        (under systemd, say, the stop signal reaches every process of the service at once)."""
        self._stopping = True

    async def stop(self) -> None:
        """SIGTERM every child, wait for them (up to ``grace``), SIGKILL the ones left."""
        self.stopping()
        running = [p for p in self.processes.values() if p.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        if running:
            log.info(
                "stopping %d delivery process%s", len(running), "es" if len(running) > 1 else ""
            )
            _, late = await asyncio.wait(
                [asyncio.ensure_future(p.wait()) for p in running], timeout=self.grace
            )
            for process in running:
                if process.returncode is None:
                    log.warning(
                        "delivery process (pid %d) did not stop in %.0fs; killing it",
                        process.pid,
                        self.grace,
                    )
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            if late:
                await asyncio.wait(late, timeout=self.grace)
        for keeper in self._keepers:
            keeper.cancel()
        await asyncio.gather(*self._keepers, return_exceptions=True)

    def context(self) -> Callable[[web.Application], AsyncIterator[None]]:
        """The app's cleanup context: children start with the app, and stop after it has
        stopped receiving (aiohttp runs cleanup contexts after in-flight requests end)."""

        async def run(app: web.Application) -> AsyncIterator[None]:
            await self.start()
            try:
                yield
            finally:
                await self.stop()

        return run


def worker_command(
    config_path: Path,
    *,
    host: str,
    port: int,
    log_format: str,
    log_level: str,
) -> Callable[[int], list[str]]:
    """The command line of delivery process ``number``: ``eventrouter worker`` on the same
    config, its ``/healthz``, ``/readyz`` and ``/metrics`` on ``port + number - 1`` (any free
    port when ``port`` is 0), watching this process."""
    parent = os.getpid()

    def command(number: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "eventrouter",
            "worker",
            "--config",
            str(config_path.resolve()),
            "--host",
            host,
            "--port",
            str(port + number - 1 if port else 0),
            "--log-format",
            log_format,
            "--log-level",
            log_level,
            "--parent",
            str(parent),
        ]

    return command


def exit_with_parent(parent: int) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context for a child of ``serve``: once ``parent`` is no longer this process's
    parent (it died without stopping us: SIGKILL, a crash), stop as on SIGTERM, gracefully."""

    async def watch() -> None:
        # nothing tells a process that its parent died (short of Linux's PR_SET_PDEATHSIG):
        # reparenting, which getppid shows, is the portable sign
        while os.getppid() == parent:  # noqa: ASYNC110
            await asyncio.sleep(PARENT_CHECK_INTERVAL)
        log.warning("the serve process (pid %d) is gone; stopping", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    async def run(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(watch(), name="exit-with-parent")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return run


def _exit_status(code: int) -> str:
    if code < 0:
        try:
            return f"on {signal.Signals(-code).name}"
        except ValueError:
            return f"on signal {-code}"
    return f"with status {code}"
