"""How the core calls plugin hooks: one place, one idiom (datasette's)::

    for result in hook(**arguments):
        await await_me_maybe(result)

where ``hook`` is one plugin's implementation (:func:`implementations`): pluggy is synchronous,
so an implementation may return an awaitable, which the core awaits. Each implementation is
called on its own so that one observer's error affects no other (:func:`notify_observers`), an
answer is credited to its plugin (registration) and ``event_normalised`` implementations form a
chain (:func:`transform_event`).

``EVENTROUTER_TRACE_PLUGINS=1`` logs every hook call (logger ``eventrouter.hooks``): the hook,
the plugin, a summary of the arguments and the result and how long it took. The summaries show
ids, names, numbers and sizes, never a payload, header or message text, so the trace holds no
secret.
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
from attrs import frozen

from eventrouter import hookspecs
from eventrouter.errors import ConfigError
from eventrouter.events import Event
from eventrouter.sources import Source, WebhookRequest

__all__ = [
    "HOOK_NAMES",
    "TRACE_PLUGINS_ENV",
    "Implementation",
    "await_me_maybe",
    "implementations",
    "notify_observers",
    "refuse_wrappers",
    "summary",
    "transform_event",
]

log = logging.getLogger("eventrouter.hooks")

TRACE_PLUGINS_ENV = "EVENTROUTER_TRACE_PLUGINS"

#: every hook plugins may implement (hookspecs.py)
HOOK_NAMES = tuple(
    name for name, value in vars(hookspecs).items() if hasattr(value, "eventrouter_spec")
)

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


def implementations(pm: pluggy.PluginManager, hook_name: str) -> list[tuple[str, Implementation]]:
    """(plugin name, its implementation) for each plugin implementing ``hook_name``, in the order
    pluggy calls them (the last registered first, unless ``tryfirst``/``trylast``)."""
    return [
        (impl.plugin_name, Implementation(hook_name, impl))
        for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls())
    ]


@frozen
class Implementation:
    """One plugin's implementation of a hook, called on its own: ``hook(**arguments)`` returns
    what pluggy's call would for that plugin alone (a list of its result, empty for None).

    pluggy has no public way to call one implementation for any plugin (``subset_hook_caller``
    needs hashable plugin objects), so this passes the arguments the implementation names, as
    pluggy does; wrapper implementations are refused at start-up (:func:`refuse_wrappers`).
    """

    hook_name: str
    impl: pluggy.HookImpl

    def __call__(self, **arguments: Any) -> list[Any]:
        wanted = {name: arguments[name] for name in self.impl.argnames}
        result = self._traced(wanted) if tracing() else self.impl.function(**wanted)
        return [] if result is None else [result]

    def _traced(self, arguments: dict[str, Any]) -> Any:
        started = time.perf_counter()
        answer = "raised"
        try:
            result = self.impl.function(**arguments)
            answer = f"returned {summary(result)}"
            return result
        except BaseException as exc:
            answer = f"raised {type(exc).__name__}"
            raise
        finally:
            shown = ", ".join(f"{name}={summary(value)}" for name, value in arguments.items())
            log.info(
                "hook %s(%s) by %s: %s in %.3f ms",
                self.hook_name,
                shown,
                self.impl.plugin_name,
                answer,
                (time.perf_counter() - started) * 1000,
            )


def refuse_wrappers(pm: pluggy.PluginManager) -> None:
    """Raise ConfigError for a wrapper implementation of any hook: the core calls each
    implementation on its own (:class:`Implementation`), where a wrapper would do nothing."""
    for name in HOOK_NAMES:
        for impl in getattr(pm.hook, name).get_hookimpls():
            if impl.hookwrapper or impl.wrapper:
                raise ConfigError(
                    [
                        f"plugin {impl.plugin_name!r}: {name} cannot be a wrapper (the core calls "
                        "each implementation on its own; see docs/hooks.md)"
                    ]
                )


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
