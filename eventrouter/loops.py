"""The event loop the long-running commands run on (``[server] event_loop``).

``serve``, ``worker`` and ``console`` run on uvloop's event loop where it is installed: the
loop libuv drives, written in Cython, which the aiohttp documentation recommends for servers.
Everything eventrouter does on a loop (aiohttp, threads handing results back, signals,
subprocesses) works the same on both; uvloop's costs fewer instructions per request
(README, *Performance*). ``event_loop = "asyncio"`` keeps the standard library's own.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["EVENT_LOOPS", "loop_factory", "loop_name", "run", "uvloop_installed"]

T = TypeVar("T")

#: what ``[server] event_loop`` may say
EVENT_LOOPS = ("auto", "uvloop", "asyncio")


@functools.cache
def uvloop_installed() -> bool:
    """Whether uvloop can be imported here (it is not built for Windows or PyPy)."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def loop_factory(event_loop: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes the loop ``event_loop`` names: uvloop's for ``uvloop``, and for ``auto`` where
    uvloop is installed; asyncio's own otherwise."""
    if event_loop not in EVENT_LOOPS:
        raise ValueError(f"unknown event loop {event_loop!r}")
    if event_loop == "uvloop" or (event_loop == "auto" and uvloop_installed()):
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop`` or ``asyncio``: the library ``loop`` comes from (for the start-up line)."""
    return type(loop).__module__.partition(".")[0]


def run(main: Coroutine[Any, Any, T], *, event_loop: str = "auto") -> T:
    """``asyncio.run(main)`` on the loop ``event_loop`` names."""
    with asyncio.Runner(loop_factory=loop_factory(event_loop)) as runner:
        return runner.run(main)
