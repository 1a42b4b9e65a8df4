"""How the core calls plugin hooks: one place, one idiom (datasette's)::

    for result in pm.hook.NAME(**arguments):
        await await_me_maybe(result)

pluggy is synchronous: an implementation may return an awaitable, which the core awaits. Where
one implementation must not affect another (observers, :func:`notify_observers`), or an answer is
credited to its plugin (registration) or chained (``event_normalised``, :func:`transform_event`),
each implementation is called on its own (:func:`implementations`), through pluggy all the same.

``EVENTROUTER_TRACE_PLUGINS=1`` logs every hook call (logger ``eventrouter.hooks``): the hook, the
plugins that implement it, a summary of the arguments and results and how long it took. The
summaries show ids, names, numbers and sizes, never a payload, header or message text, so the
trace holds no secret.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pluggy

from eventrouter.events import Event
from eventrouter.sources import Source, WebhookRequest

__all__ = [
    "TRACE_PLUGINS_ENV",
    "await_me_maybe",
    "implementations",
    "notify_observers",
    "summary",
    "trace_hook_calls",
    "transform_event",
]

log = logging.getLogger("eventrouter.hooks")

TRACE_PLUGINS_ENV = "EVENTROUTER_TRACE_PLUGINS"

#: list items shown in a trace before "..."
_SHOWN_ITEMS = 5


def tracing() -> bool:
    """Whether ``EVENTROUTER_TRACE_PLUGINS`` asks for a trace of hook calls."""
    return os.environ.get(TRACE_PLUGINS_ENV, "").strip().lower() not in ("", "0", "false", "no")


async def await_me_maybe(value: Any) -> Any:
    """``value``, awaited first if a hook implementation returned an awaitable."""
    if not inspect.isawaitable(value):
        return value
    if not tracing():
        return await value
    started = time.perf_counter()
    try:
        return await value
    finally:
        elapsed = (time.perf_counter() - started) * 1000
        log.info("awaited %s in %.3f ms", _qualname(value), elapsed)


async def notify_observers(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> None:
    """Call an observer hook, each plugin's implementation on its own, awaiting what it returns.

    An implementation's error is logged, never raised: an observer can neither fail a request or
    a delivery nor keep the other observers from hearing of it.
    """
    for plugin, hook in implementations(pm, hook_name):
        try:
            for result in hook(**kwargs):
                await await_me_maybe(result)
        except Exception:
            log.exception("plugin %s: its %s hook failed", plugin, hook_name)


def implementations(
    pm: pluggy.PluginManager, hook_name: str
) -> list[tuple[str, pluggy.HookCaller]]:
    """(plugin name, the hook restricted to that plugin) for each plugin implementing
    ``hook_name``, in the order pluggy calls them (the last registered first, unless
    ``tryfirst``/``trylast``). For hooks whose answers are the plugin's own: calling each
    restricted hook still goes through pluggy (argument checks, the trace)."""
    impls = getattr(pm.hook, hook_name).get_hookimpls()
    if not impls:
        return []
    plugins = [plugin for _, plugin in pm.list_name_plugin()]
    return [
        (
            impl.plugin_name,
            pm.subset_hook_caller(
                hook_name, remove_plugins=[p for p in plugins if p is not impl.plugin]
            ),
        )
        for impl in reversed(impls)
    ]


async def transform_event(pm: pluggy.PluginManager, event: Event, source: Source) -> Event | None:
    """Run the ``event_normalised`` implementations in turn, each given the event the previous
    one returned; None when one drops it (returns False)."""
    for plugin, hook in implementations(pm, "event_normalised"):
        for result in hook(event=event, source=source):
            answer = await await_me_maybe(result)
            if answer is False:
                log.info("event %s dropped by plugin %s", event.id, plugin)
                return None
            if isinstance(answer, Event):
                event = answer
    return event


def summary(value: object) -> str:
    """A short description of a hook argument or result for the trace: what it is and which
    one (ids, names, numbers, sizes), never its content (payloads, headers, messages may hold
    secrets)."""
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Event):
        return f"Event(id={value.id!r}, source={value.source!r}, type={value.type!r})"
    if isinstance(value, WebhookRequest):
        return f"WebhookRequest({value.method} {value.path}, {len(value.body)} bytes)"
    if isinstance(value, str | bytes | bytearray):
        return f"{type(value).__name__}[{len(value)}]"
    if isinstance(value, Sequence):
        shown = [summary(item) for item in value[:_SHOWN_ITEMS]]
        return f"[{', '.join(shown)}{', ...' if len(value) > _SHOWN_ITEMS else ''}]"
    if isinstance(value, Mapping):
        return f"{type(value).__name__}[{len(value)} keys]"
    if inspect.isawaitable(value):
        return f"awaitable {_qualname(value)}"
    name = getattr(value, "name", None)
    if isinstance(name, str):  # a source or sink: its configured name
        return f"{type(value).__name__}(name={name!r})"
    return _qualname(value)


def _qualname(value: object) -> str:
    """A function's, coroutine's or class's qualified name, else the name of its type."""
    return str(getattr(value, "__qualname__", type(value).__name__))


def trace_hook_calls(pm: pluggy.PluginManager) -> None:
    """Log every call of ``pm``'s hooks (see the module's docstring)."""
    started: list[float] = []  # pluggy calls are synchronous: before/after nest like a stack

    def before(
        hook_name: str, hook_impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]
    ) -> None:
        started.append(time.perf_counter())

    def after(
        outcome: pluggy.Result[Any],
        hook_name: str,
        hook_impls: Sequence[pluggy.HookImpl],
        kwargs: Mapping[str, Any],
    ) -> None:
        elapsed = (time.perf_counter() - started.pop()) * 1000
        plugins = ", ".join(impl.plugin_name for impl in reversed(hook_impls)) or "none"
        arguments = ", ".join(f"{name}={summary(value)}" for name, value in kwargs.items())
        error = outcome.exception
        answer = (
            f"raised {type(error).__name__}"
            if error is not None
            else f"returned {summary(outcome.get_result())}"
        )
        log.info(
            "hook %s(%s) by [%s]: %s in %.3f ms", hook_name, arguments, plugins, answer, elapsed
        )

    pm.add_hookcall_monitoring(before, after)
