"""Running the console inside ``eventrouter serve``: a second site on its own host and port."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from eventrouter.config import Config
from eventrouter.console.app import create_console_app
from eventrouter.metrics import Metrics
from eventrouter.store import Store

__all__ = ["ConsoleListenError", "console_listener"]

log = logging.getLogger("eventrouter.console")


class ConsoleListenError(OSError):
    """The console's port cannot be bound: the message names ``[console] port``."""


def console_listener(
    config: Config, *, store: Store, metrics: Metrics
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context for the serving app: the console listens while the app runs, on the
    app's own store (already open when it starts) and metrics."""

    async def run(app: web.Application) -> AsyncIterator[None]:
        console = config.console
        runner = web.AppRunner(
            create_console_app(config, store=store, metrics=metrics),
            access_log=logging.getLogger("aiohttp.access"),
            shutdown_timeout=2,
        )
        await runner.setup()
        site = web.TCPSite(runner, console.host, console.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConsoleListenError(
                f"console: cannot listen on {console.host}:{console.port}: "
                f"{exc.strerror or exc} (change [console] port)"
            ) from None
        log.info("console at http://%s:%d", console.host, runner.addresses[0][1])
        yield
        await runner.cleanup()

    return run
