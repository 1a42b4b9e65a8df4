"""Finding plugins (built-in modules and the ``eventrouter`` entry-point group) and what they provide."""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import re
from collections.abc import Iterable
from typing import Any

import pluggy
from attrs import define, field, frozen

from eventrouter import hookspecs
from eventrouter.errors import ConfigError
from eventrouter.hooks import implementations, refuse_wrappers
from eventrouter.sinks import Sink
from eventrouter.sources import Source

__all__ = [
    "DEFAULT_PLUGINS",
    "FAILED_PLUGINS",
    "PluginInfo",
    "Provided",
    "Registry",
    "create_plugin_manager",
    "install_hint",
    "plugin_infos",
]

log = logging.getLogger("eventrouter.plugins")

ENTRY_POINT_GROUP = "eventrouter"
LOAD_PLUGINS_ENV = "EVENTROUTER_LOAD_PLUGINS"

#: Built-in behaviour, registered through the same hooks as any third-party plugin.
DEFAULT_PLUGINS = (
    "eventrouter.builtin.standard_webhooks",
    "eventrouter.builtin.http_forward",
    "eventrouter.builtin.signed",
)


def create_plugin_manager(
    *, load_entrypoints: bool = True, plugins: Iterable[Any] = ()
) -> pluggy.PluginManager:
    """A plugin manager with the built-in plugins, installed ones and ``plugins`` registered.

    ``EVENTROUTER_LOAD_PLUGINS`` (comma-separated entry-point or distribution names; empty for
    none) restricts which installed plugins load; built-in plugins always load.
    ``EVENTROUTER_TRACE_PLUGINS=1`` logs every hook call (see :mod:`eventrouter.hooks`).
    """
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
    if load_entrypoints:
        _load_entrypoints(pm, allowed_plugins())
    for plugin in plugins:
        pm.register(plugin, name=_plugin_name(pm, plugin))
    pm.check_pending()
    return pm


def _plugin_name(pm: pluggy.PluginManager, plugin: Any) -> str:
    """A readable, unique name for a plugin object registered directly (tests, embedding)."""
    base = (
        getattr(plugin, "__name__", None)
        or f"{type(plugin).__module__}.{type(plugin).__qualname__}"
    )
    name, n = base, 1
    while pm.has_plugin(name):
        n += 1
        name = f"{base}#{n}"
    return name


def _canonical_name(name: str) -> str:
    """A distribution or entry-point name as PEP 503 compares them (``Eventrouter_CSV`` is
    ``eventrouter-csv``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def allowed_plugins() -> set[str] | None:
    """The names in ``EVENTROUTER_LOAD_PLUGINS`` in canonical form; None when it is not set."""
    allowed = os.environ.get(LOAD_PLUGINS_ENV)
    if allowed is None:
        return None
    return {_canonical_name(name.strip()) for name in allowed.split(",") if name.strip()}


def _load_entrypoints(pm: pluggy.PluginManager, names: set[str] | None) -> None:
    """Load installed plugins one by one, so one that fails to import cannot take the rest down.

    A failure is logged and kept in ``FAILED_PLUGINS`` for ``eventrouter plugins`` to show.
    """
    from importlib.metadata import entry_points

    matched: set[str] = set()
    installed: set[str] = set()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist_name = ep.dist.name if ep.dist else ""
        candidates = {_canonical_name(ep.name), _canonical_name(dist_name)} - {""}
        installed |= candidates
        if names is not None:
            if not candidates & names:
                continue
            matched |= candidates & names
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=ep.name)
        except Exception as exc:  # noqa: BLE001 - any import-time error of a third-party plugin
            FAILED_PLUGINS[ep.name] = f"{dist_name or ep.value}: {type(exc).__name__}: {exc}"
            log.error("plugin %s (%s) failed to load and is skipped: %s", ep.name, dist_name, exc)
    unknown = sorted((names or set()) - matched)
    if unknown:
        log.warning(
            "%s names %s, which no installed plugin is called (installed: %s)",
            LOAD_PLUGINS_ENV,
            ", ".join(unknown),
            ", ".join(sorted(installed)) or "none",
        )


#: entry-point name -> why it failed to load (filled by create_plugin_manager)
FAILED_PLUGINS: dict[str, str] = {}


@frozen
class Provided:
    """A source or sink type and the plugin that registered it."""

    type_name: str
    cls: type
    plugin: str


@define
class Registry:
    """Source and sink types by name, as the installed plugins registered them."""

    sources: dict[str, Provided] = field(factory=dict)
    sinks: dict[str, Provided] = field(factory=dict)

    @classmethod
    def collect(cls, pm: pluggy.PluginManager) -> Registry:
        """Call every plugin's registration hooks; refuse two types with one name, and wrapper
        implementations of any hook (the core calls each implementation on its own, where a
        wrapper would silently do nothing)."""
        refuse_wrappers(pm)
        registry = cls()
        registry._collect(pm, "register_sources", Source, registry.sources)
        registry._collect(pm, "register_sinks", Sink, registry.sinks)
        return registry

    @staticmethod
    def _collect(
        pm: pluggy.PluginManager, hook_name: str, base: type, into: dict[str, Provided]
    ) -> None:
        kind = "source" if base is Source else "sink"
        # in registration order, so a type registered twice names the earlier plugin first
        for plugin, hook in reversed(implementations(pm, hook_name)):

            def register(type_: type, plugin: str = plugin) -> None:
                if not (inspect.isclass(type_) and issubclass(type_, base)):
                    raise TypeError(
                        f"plugin {plugin!r} registered {type_!r}, not a {base.__name__} subclass"
                    )
                name = getattr(type_, "type_name", None)
                if not isinstance(name, str) or not name:
                    raise TypeError(
                        f"{kind} type {type_.__qualname__} from plugin {plugin!r} has no type_name"
                    )
                if name in into:
                    raise ConfigError(
                        [
                            f"{kind} type {name!r} is registered twice: by plugin {into[name].plugin!r} "
                            f"and by plugin {plugin!r}; uninstall one of them"
                        ]
                    )
                into[name] = Provided(type_name=name, cls=type_, plugin=plugin)

            hook(register=register)


def install_hint(type_name: str) -> str:
    """How to get a source or sink type: the package that conventionally provides it (and a
    word on ``EVENTROUTER_LOAD_PLUGINS`` when it is set, since it may be what hides the type)."""
    hint = f"pip install eventrouter-{type_name.replace('_', '-')}"
    if os.environ.get(LOAD_PLUGINS_ENV) is not None:
        hint += f", or add it to {LOAD_PLUGINS_ENV}, which restricts the plugins that load"
    return hint


@frozen
class PluginInfo:
    """One plugin as ``eventrouter plugins`` shows it."""

    name: str
    distribution: str | None
    version: str | None
    sources: tuple[str, ...]
    sinks: tuple[str, ...]
    hooks: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "sources": list(self.sources),
            "sinks": list(self.sinks),
            "hooks": list(self.hooks),
        }


def plugin_infos(pm: pluggy.PluginManager, registry: Registry | None = None) -> list[PluginInfo]:
    """Every registered plugin with its distribution, version, types and hooks."""
    from eventrouter import __version__

    registry = registry or Registry.collect(pm)
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distributions()}
    infos = []
    for name, plugin in pm.list_name_plugin():
        dist = dists.get(id(plugin))
        distribution: str | None
        version: str | None
        if dist is not None:
            distribution, version = dist.metadata["Name"], dist.version
        elif name in DEFAULT_PLUGINS:
            distribution, version = "eventrouter", __version__
        else:
            distribution = version = None
        hooks = tuple(sorted(caller.name for caller in pm.get_hookcallers(plugin) or ()))
        infos.append(
            PluginInfo(
                name=name,
                distribution=distribution,
                version=version,
                sources=_provided_by(registry.sources, name),
                sinks=_provided_by(registry.sinks, name),
                hooks=hooks,
            )
        )
    return sorted(infos, key=lambda info: (info.name not in DEFAULT_PLUGINS, info.name))


def _provided_by(types: dict[str, Provided], plugin: str) -> tuple[str, ...]:
    return tuple(sorted(p.type_name for p in types.values() if p.plugin == plugin))
