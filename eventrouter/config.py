"""One TOML file: ``[server]``, ``[store]``, ``[sources.NAME]``, ``[sinks.NAME]``, ``[[routes]]``,
``[console]``.

Every problem is collected and reported at once, each with its path
(``sinks.alerts.webhook_url: required``), so a user fixes a file in one pass.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import ipaddress
import os
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs
import jmespath
import jmespath.exceptions
from attrs import define, field, frozen

from eventrouter.circuit import DEFAULT_CIRCUIT_FAILURES, DEFAULT_PROBE_SCHEDULE
from eventrouter.converter import Duration, Secret, converter
from eventrouter.errors import ConfigError
from eventrouter.loops import EVENT_LOOPS, uvloop_installed
from eventrouter.operator_events import OPERATOR_SOURCE
from eventrouter.plugins import Registry, install_hint
from eventrouter.ratelimit import RateLimit
from eventrouter.redact import Redactor
from eventrouter.sinks import Sink
from eventrouter.sources import Source
from eventrouter.store.config import StoreConfig

__all__ = [
    "Config",
    "ConsoleConfig",
    "ConsoleUser",
    "DeliveryPolicy",
    "Route",
    "ServerConfig",
    "SinkSpec",
    "StoreAccess",
    "StoreConfig",
    "closest",
    "default_secrets_warning",
    "load_config",
    "load_store_access",
    "parse_config",
]

DEFAULT_RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)
"""Like Svix: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SECTIONS = ("console", "routes", "server", "sinks", "sources", "store")
_ENV = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@frozen
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = field(
        default=8080,
        validator=attrs.validators.and_(attrs.validators.ge(0), attrs.validators.le(65535)),
    )
    max_body_bytes: int = field(default=1024 * 1024, validator=attrs.validators.gt(0))
    shutdown_timeout: Duration = Duration(30)
    #: seconds a client may take to send its request headers before it gets a 408
    header_timeout: Duration = field(default=Duration(10))
    #: seconds a client may take to send its body before it gets a 408
    read_timeout: Duration = field(default=Duration(15))
    #: open connections at most; a client beyond it gets a 503 with Retry-After
    max_connections: int = field(default=1024, validator=attrs.validators.gt(0))
    #: open connections from one client (an IPv4 address, an IPv6 /64) at most; beyond: 503
    max_connections_per_client: int = field(default=128, validator=attrs.validators.gt(0))
    #: seconds a kept-alive connection may wait for its next request before it is closed
    keepalive_timeout: Duration = field(default=Duration(5))
    #: reverse proxies (CIDRs) whose X-Forwarded-For names the client; nobody else's is read
    trusted_proxies: tuple[str, ...] = field(default=())
    #: ``eventrouter worker`` processes that ``serve`` runs for delivery (0: it delivers itself)
    delivery_processes: int = field(default=0, validator=attrs.validators.ge(0))
    #: the first delivery process's /healthz, /readyz and /metrics port, the next ones counting
    #: up from it (0: any free port, logged)
    delivery_port: int = field(
        default=0,
        validator=attrs.validators.and_(attrs.validators.ge(0), attrs.validators.le(65535)),
    )
    #: the event loop serve, worker and console run on: uvloop's, asyncio's own, or ``auto``
    #: (uvloop's where it is installed, which it is with eventrouter on Linux and macOS)
    event_loop: str = field(default="auto")

    @event_loop.validator
    def _event_loop(self, attribute: attrs.Attribute[Any], value: str) -> None:
        if value not in EVENT_LOOPS:
            raise ValueError(f"expected one of {', '.join(map(repr, EVENT_LOOPS))}, got {value!r}")
        if value == "uvloop" and not uvloop_installed():
            raise ValueError(
                'uvloop is not installed here (pip install uvloop), or set event_loop = "auto"'
            )

    @header_timeout.validator
    @read_timeout.validator
    @keepalive_timeout.validator
    def _positive(self, attribute: attrs.Attribute[Any], value: float) -> None:
        if not value > 0:
            raise ValueError(f"must be more than 0 seconds, got {value!r}")

    @trusted_proxies.validator
    def _networks(self, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
        for entry in value:
            try:
                ipaddress.ip_network(str(entry).strip(), strict=False)
            except ValueError:
                raise ValueError(
                    f"expected addresses or CIDRs such as '10.0.0.0/8', got {entry!r}"
                ) from None

    @property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """``trusted_proxies`` parsed (a bare address is a /32 or /128)."""
        return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in self.trusted_proxies)


ROLES = ("viewer", "operator")
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


@frozen
class ConsoleUser:
    """A console login: a password hash (``eventrouter console hash-password``) and a role."""

    password_hash: str
    role: str = field(default="viewer", validator=attrs.validators.in_(ROLES))


@frozen
class ConsoleConfig:
    """The operator console's own listener (``[console]``): off unless the table is present."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = field(
        default=8081,
        validator=attrs.validators.and_(attrs.validators.ge(0), attrs.validators.le(65535)),
    )
    users: dict[str, ConsoleUser] = field(factory=dict)
    #: bearer tokens for scripts, operator role (``["${EVENTROUTER_CONSOLE_TOKEN}"]``)
    tokens: tuple[Secret, ...] = ()
    #: bearer tokens with the viewer role only
    viewer_tokens: tuple[Secret, ...] = ()
    #: mark session cookies Secure even on plain HTTP (set it behind a TLS-terminating proxy)
    secure_cookies: bool = False
    #: how long a login lasts
    session_lifetime: Duration = Duration(8 * 3600)
    #: the webhook base URL shown to give each provider (default: [server] host and port)
    public_url: str | None = None

    @property
    def open_access(self) -> bool:
        """No credentials configured: everyone who reaches the listener is an operator."""
        return not (self.users or self.tokens or self.viewer_tokens)


#: the largest [sinks.NAME.delivery] batch_size (a claim's events are held in memory)
MAX_BATCH_SIZE = 10_000


@frozen
class DeliveryPolicy:
    #: deliveries to this sink in flight at once (batches, for a sink with deliver_batch)
    concurrency: int = field(default=4, validator=attrs.validators.gt(0))
    #: most events handed to a sink's deliver_batch at once (other sinks take them one by one)
    batch_size: int = field(
        default=100, validator=[attrs.validators.gt(0), attrs.validators.le(MAX_BATCH_SIZE)]
    )
    #: after a claim got less than a full batch, how long the next one gathers before it is
    #: claimed (sinks with deliver_batch: bigger batches while events trickle in)
    batch_wait: Duration = field(
        default=Duration(0.05),
        validator=[attrs.validators.ge(Duration(0)), attrs.validators.le(Duration(5))],
    )
    #: delay before each retry; after the last one the delivery is dead-lettered
    retry_schedule: tuple[Duration, ...] = tuple(Duration(s) for s in DEFAULT_RETRY_SCHEDULE)
    #: each delay is varied by up to this fraction, so retries do not arrive in lock-step
    jitter: float = field(default=0.2, validator=[attrs.validators.ge(0), attrs.validators.le(1)])
    #: one attempt may take this long before it counts as failed (retryable)
    timeout: Duration = Duration(30)
    #: hand the sink credential fields (e.g. Pelcro's magic_link_token) instead of [redacted]
    include_sensitive: bool = False
    #: a claimed delivery whose worker vanished (crash) is taken over after timeout + this
    #: (default 30 s); every process sharing a store must use the same value
    lease_margin: Duration | None = None
    #: retryable failures in a row that open the sink's circuit (see eventrouter.circuit); 0: never
    circuit_failures: int = field(
        default=DEFAULT_CIRCUIT_FAILURES, validator=attrs.validators.ge(0)
    )
    #: waits between probes while the circuit is open; the last one repeats
    circuit_probes: tuple[Duration, ...] = field(
        default=tuple(Duration(s) for s in DEFAULT_PROBE_SCHEDULE),
        validator=attrs.validators.min_len(1),
    )
    #: also open it when this share of the attempts within ``circuit_window`` failed (at least
    #: 20 attempts, counted by each process); 0: off
    circuit_failure_ratio: float = field(
        default=0.0, validator=[attrs.validators.ge(0), attrs.validators.le(1)]
    )
    circuit_window: Duration = Duration(60)
    #: deliveries started per second, minute or hour ("50/s", "3000/m"), across every worker
    rate_limit: RateLimit | None = None

    @property
    def max_attempts(self) -> int:
        return len(self.retry_schedule) + 1


@frozen
class SinkSpec:
    """A configured sink: its instance and how deliveries to it are made."""

    sink: Sink
    delivery: DeliveryPolicy


@define
class Route:
    """Which events (by source and type glob, optional JMESPath filter) go to which sinks."""

    sinks: list[str]
    sources: list[str] = field(factory=lambda: ["*"])
    types: list[str] = field(factory=lambda: ["*"])
    filter: str | None = None
    _compiled: Any = field(default=None, init=False, repr=False, eq=False)

    def matches(self, source: str, event_type: str, event_dict: Mapping[str, Any] | None) -> bool:
        if not any(fnmatch.fnmatchcase(source, pattern) for pattern in self.sources):
            return False
        if not any(fnmatch.fnmatchcase(event_type, pattern) for pattern in self.types):
            return False
        if self._compiled is None:
            return True
        return bool(self._compiled.search(event_dict))


@frozen
class _SourceTable:
    plugin: str
    path: str | None = None


@frozen
class _SinkTable:
    plugin: str
    delivery: DeliveryPolicy = DeliveryPolicy()


@define
class Config:
    """A validated configuration, with its sources and sinks instantiated."""

    server: ServerConfig
    store: StoreConfig
    sources: dict[str, Source]
    source_paths: dict[str, str]
    sinks: dict[str, SinkSpec]
    routes: list[Route]
    base_dir: Path
    console: ConsoleConfig = ConsoleConfig(enabled=False)
    #: every secret value in the file, for the log redactor; never printed
    secrets: frozenset[str] = field(repr=False, factory=frozenset)
    #: (entry, variable) for each secret option whose value is the ``${VARIABLE:-default}``
    #: fallback written in the file: anyone who can read the file knows it
    default_secrets: tuple[tuple[str, str], ...] = ()

    def store_path(self) -> Path:
        return (self.base_dir / self.store.path).resolve()

    def sinks_for(
        self, source: str, event_type: str, event_dict: Mapping[str, Any] | None
    ) -> list[str]:
        """The sinks an event goes to: the union of every matching route's, in config order."""
        chosen: dict[str, None] = {}
        for route in self.routes:
            if route.matches(source, event_type, event_dict):
                chosen.update(dict.fromkeys(route.sinks))
        return list(chosen)

    @functools.cached_property
    def needs_event_dict(self) -> bool:
        """Whether routing needs the event as a dict (some route has a JMESPath filter)."""
        return any(route.filter for route in self.routes)


@define
class StoreAccess:
    """What the commands that work on the store (``events``, ``dlq``, ``replay``) need of a
    config file: the store, and the names of the sinks."""

    store: StoreConfig
    sinks: tuple[str, ...]
    base_dir: Path


def _read(file: Path) -> dict[str, Any]:
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [f"{file}: no such file (pass --config PATH, e.g. examples/eventrouter.toml)"]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{file}: cannot read: {exc}"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{file}: invalid TOML: {exc}"]) from None


def load_config(
    path: str | os.PathLike[str], registry: Registry, *, environ: Mapping[str, str] | None = None
) -> Config:
    """Read, interpolate, validate and instantiate the config file at ``path``."""
    file = Path(path)
    return parse_config(_read(file), registry, base_dir=file.resolve().parent, environ=environ)


def load_store_access(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> StoreAccess:
    """Read only ``[store]`` (interpolated and validated as :func:`load_config` does) and the
    names of the ``[sinks]`` tables, so that looking at or retrying what is in the store works
    on a machine without the sources' and sinks' secrets in its environment."""
    file = Path(path)
    document = _read(file)
    problems: list[str] = []
    secrets: set[str] = set()
    store_table = _interpolate(
        document.get("store", {}),
        os.environ if environ is None else environ,
        "store",
        problems,
        secrets,
        {},
    )
    store = _structure(store_table, StoreConfig, "store", problems)
    _require_redis_url(store, problems)
    sinks = _table(document, "sinks", problems)
    if problems:
        raise _problems_error(problems, secrets)
    assert store is not None
    return StoreAccess(store=store, sinks=tuple(sinks), base_dir=file.resolve().parent)


def _problems_error(problems: list[str], secrets: set[str]) -> ConfigError:
    # a message may quote a value ("expected a list, got str '...'"): never a secret's
    redact = Redactor(secrets)
    return ConfigError([redact(problem) for problem in _root_causes(problems)])


def _require_redis_url(store: StoreConfig | None, problems: list[str]) -> None:
    if store is not None and store.backend == "redis" and not store.url:
        problems.append(
            "store.url: required when backend = 'redis' (e.g. url = 'redis://localhost:6379/0')"
        )


def parse_config(
    document: Mapping[str, Any],
    registry: Registry,
    *,
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Validate a config already read into a dict (as :func:`load_config` and tests do)."""
    problems: list[str] = []
    secrets: set[str] = set()
    defaults: dict[str, str] = {}
    document = _interpolate(
        document, os.environ if environ is None else environ, "", problems, secrets, defaults
    )

    for key in sorted(set(document) - set(_SECTIONS), key=str):
        problems.append(f"{key}: unknown section ({_suggestion(key, _SECTIONS)})")

    server = _structure(document.get("server", {}), ServerConfig, "server", problems)
    store = _structure(document.get("store", {}), StoreConfig, "store", problems)
    _require_redis_url(store, problems)

    source_tables = _table(document, "sources", problems)
    sink_tables = _table(document, "sinks", problems)
    sources, paths = _sources(source_tables, registry, problems, secrets)
    sinks = _sinks(sink_tables, registry, problems, secrets)
    routes = _routes(document.get("routes", []), set(source_tables), set(sink_tables), problems)
    console = _console(document.get("console"), problems, secrets)

    if problems:
        raise _problems_error(problems, secrets)
    assert server is not None
    assert store is not None
    return Config(
        console=console,
        server=server,
        store=store,
        sources=sources,
        source_paths=paths,
        sinks=sinks,
        routes=routes,
        base_dir=base_dir or Path.cwd(),
        secrets=frozenset(s for s in secrets if s),
        default_secrets=_default_secrets(sources, {n: s.sink for n, s in sinks.items()}, defaults),
    )


def _default_secrets(
    sources: Mapping[str, Source], sinks: Mapping[str, Sink], defaults: Mapping[str, str]
) -> tuple[tuple[str, str], ...]:
    """Each (entry, variable) whose secret option took the fallback written in the file."""
    found: dict[tuple[str, str], None] = {}
    for kind, entries in (("sources", sources), ("sinks", sinks)):
        for name, entry in entries.items():
            for option in type(entry).secret_options:
                option_path = f"{kind}.{name}.{option}"
                for path, variable in defaults.items():
                    if path == option_path or path.startswith(
                        (f"{option_path}[", f"{option_path}.")
                    ):
                        found[(f"{kind}.{name}", variable)] = None
    return tuple(found)


def default_secrets_warning(config: Config, config_path: str | os.PathLike[str]) -> str | None:
    """One warning naming every entry whose secret is a public default from the file, or None."""
    if not config.default_secrets:
        return None
    entries = ", ".join(dict.fromkeys(entry for entry, _ in config.default_secrets))
    variables = ", ".join(dict.fromkeys(variable for _, variable in config.default_secrets))
    return (
        f"{entries}: using the public secret written in {config_path} ({variables} not set); "
        "anyone who reads that file can forge webhooks with it: export real secrets before "
        "exposing this server"
    )


_MISSING_ENV = "environment variable "


def _root_causes(problems: list[str]) -> list[str]:
    """Drop problems that only follow from a missing environment variable on the same key (the
    empty value it left, in a list or on its own): one unset variable, one problem."""

    def key(problem: str) -> str:
        return re.sub(r"(\[\d+\])+$", "", problem.split(": ", 1)[0])

    def missing_env(problem: str) -> bool:
        return problem.split(": ", 1)[-1].startswith(_MISSING_ENV)

    missing = {key(p) for p in problems if missing_env(p)}
    return [p for p in problems if missing_env(p) or key(p) not in missing]


def _interpolate(
    value: Any,
    environ: Mapping[str, str],
    path: str,
    problems: list[str],
    secrets: set[str],
    defaults: dict[str, str],
) -> Any:
    """``value`` with ``${VAR}`` replaced; ``defaults`` gets the path of each value that took a
    non-empty ``${VAR:-default}`` fallback (so a secret written in the file can be warned of)."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            if name in environ:
                secrets.add(environ[name])
                return environ[name]
            if default is not None:
                if default:
                    defaults[path] = name
                return default
            problems.append(
                f"{path}: {_MISSING_ENV}{name} is not set (export {name}=... or remove ${{{name}}})"
            )
            return ""

        return _ENV.sub(substitute, value)
    if isinstance(value, Mapping):
        return {
            k: _interpolate(v, environ, f"{path}.{k}" if path else k, problems, secrets, defaults)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _interpolate(v, environ, f"{path}[{i}]", problems, secrets, defaults)
            for i, v in enumerate(value)
        ]
    return value


def _table(document: Mapping[str, Any], key: str, problems: list[str]) -> dict[str, Any]:
    value = document.get(key, {})
    if not isinstance(value, dict):
        problems.append(f"{key}: expected a table of named {key} ([{key}.NAME])")
        return {}
    return value


def _structure(value: Any, cls: type[Any], path: str, problems: list[str]) -> Any:
    """``cls`` from ``value``, or None; every problem found is added to ``problems``.

    Unknown keys are reported and left out, and validators run one by one after structuring,
    so that one mistake does not hide the others in the same table.
    """
    if isinstance(value, Mapping) and attrs.has(cls):
        known = _keys_of(cls)
        unknown = sorted((key for key in value if key not in known), key=str)
        problems.extend(f"{path}: {_unknown_key(key, known)}" for key in unknown)
        value = {key: item for key, item in value.items() if key in known}
    try:
        with attrs.validators.disabled():
            structured: Any = converter.structure(value, cls)
    except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
        problems.extend(_render(exc, path))
        return None
    found = list(_validate(structured, path))
    problems.extend(found)
    return None if found else structured


def _validate(instance: Any, path: str) -> Iterator[str]:
    """Run every field's validator (and those of nested attrs instances), reporting each failure."""
    for attribute in attrs.fields(type(instance)):
        value = getattr(instance, attribute.name)
        location = f"{path}.{attribute.alias}" if path else attribute.alias
        if attribute.validator is not None:
            try:
                attribute.validator(instance, attribute, value)
            except (ValueError, TypeError) as exc:
                message = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
                matched = _VALIDATOR_MESSAGE.match(message)
                yield f"{location}: {matched.group(2) if matched else message}"
                continue
        if attrs.has(type(value)):
            yield from _validate(value, location)


def _keys_of(cls: type) -> list[str]:
    return [a.alias for a in attrs.fields(cls) if a.init]


def closest(word: Any, choices: Iterable[str]) -> str | None:
    """The choice ``word`` is most likely a misspelling of, as git and cargo suggest one."""
    found = difflib.get_close_matches(str(word), list(choices), n=1)
    return found[0] if found else None


def _suggestion(word: Any, choices: Iterable[str]) -> str:
    choices = sorted(choices)
    match = closest(word, choices)
    return f"did you mean {match!r}?" if match else f"expected one of: {', '.join(choices)}"


def _unknown_key(key: Any, known: Iterable[str]) -> str:
    return f"unknown key {key!r} ({_suggestion(key, known)})"


_VALIDATOR_MESSAGE = re.compile(r"^'(\w+)' (must .*)$")


def _format_exception(exc: BaseException, type_: Any) -> str:
    """cattrs' wording, except where our own hooks and validators say it better."""
    if isinstance(exc, KeyError):
        return "required"
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        known = _keys_of(exc.cl) if attrs.has(exc.cl) else []
        return "; ".join(_unknown_key(key, known) for key in sorted(exc.extra_fields, key=str))
    if isinstance(exc, ValueError) and str(exc):
        return str(exc)  # the converter's hooks name what was expected and the value they got
    return cattrs.v.format_exception(exc, type_)


def _render(exc: Exception, prefix: str) -> Iterator[str]:
    """cattrs' ``... @ $.a.b`` lines as ``prefix.a.b: ...``."""
    if not isinstance(exc, cattrs.BaseValidationError):
        yield f"{prefix}: {exc}"
        return
    for line in cattrs.transform_error(exc, path="$", format_exception=_format_exception):
        message, _, where = line.rpartition(" @ ")
        if not message:
            message, where = line, "$"
        where = where.removeprefix("$")
        location = (
            prefix + where
            if where.startswith("[")
            else ".".join(p for p in (prefix, where.lstrip(".")) if p)
        )
        validator = _VALIDATOR_MESSAGE.match(message)
        if validator:
            location, message = f"{location}.{validator.group(1)}", validator.group(2)
        yield f"{location}: {message}"


def _split(
    table: Any, path: str, core_keys: set[str], problems: list[str]
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    if not isinstance(table, dict):
        problems.append(f"{path}: expected a table")
        return None
    core = {k: v for k, v in table.items() if k in core_keys}
    options = {k: v for k, v in table.items() if k not in core_keys}
    if "plugin" not in core:
        problems.append(f'{path}.plugin: required (the type of this entry, e.g. plugin = "csv")')
        return None
    return core, options


def _instantiate(
    kind: str,
    name: str,
    plugin: str,
    options: dict[str, Any],
    registry_types: Mapping[str, Any],
    problems: list[str],
    secrets: set[str],
) -> Any:
    path = f"{kind}s.{name}"
    if not _NAME.match(name):
        problems.append(f"{path}: names may hold letters, digits, '_', '.' and '-' only")
        return None
    provided = registry_types.get(plugin)
    if provided is None:
        available = ", ".join(sorted(registry_types)) or "none"
        match = closest(plugin, registry_types)
        problems.append(
            f"{path}.plugin: no installed plugin provides {kind} type {plugin!r} "
            + (f"(did you mean {match!r}? " if match else "(")
            + f"install it with: {install_hint(plugin)}; installed {kind} types: {available})"
        )
        return None
    cls = provided.cls
    # known before they are checked, so that no problem reported about them quotes them
    for option in cls.secret_options:
        _collect_strings(options.get(option), secrets)
    structured = _structure(options, cls.Options, path, problems)
    if structured is None:
        return None
    for option in cls.secret_options:
        _collect_strings(getattr(structured, option, None), secrets)
    _collect_strings(structured, secrets, kind=Secret)  # masked without secret_options
    try:
        instance = cls(name, structured)
        found = list(instance.check())
    except (ValueError, TypeError) as exc:
        problems.append(f"{path}: {exc}")
        return None
    problems.extend(f"{path}.{problem}" for problem in found)
    return instance if not found else None


def _collect_strings(value: Any, into: set[str], *, kind: type[str] = str) -> None:
    """Every string of type ``kind`` in ``value``: lists, tables and attrs instances are walked."""
    if isinstance(value, str):
        if isinstance(value, kind):
            into.add(value)
            _, colon, password = value.partition(":")
            if colon and "/" not in value:
                into.add(password)  # "user:password" credentials: the password alone too
    elif attrs.has(type(value)):
        for attribute in attrs.fields(type(value)):
            _collect_strings(getattr(value, attribute.name), into, kind=kind)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _collect_strings(item, into, kind=kind)
    elif isinstance(value, Mapping):
        for item in value.values():
            _collect_strings(item, into, kind=kind)


def _sources(
    tables: dict[str, Any], registry: Registry, problems: list[str], secrets: set[str]
) -> tuple[dict[str, Source], dict[str, str]]:
    sources: dict[str, Source] = {}
    paths: dict[str, str] = {}
    for name, table in tables.items():
        if name == OPERATOR_SOURCE:
            problems.append(
                f"sources.{name}: the name {name!r} is eventrouter's own (its operator events); "
                "choose another"
            )
            continue
        split = _split(table, f"sources.{name}", {"plugin", "path"}, problems)
        if split is None:
            continue
        core = _structure(split[0], _SourceTable, f"sources.{name}", problems)
        if core is None:
            # the plugin's own options are still checked, so every problem is reported at once
            if isinstance(split[0].get("plugin"), str):
                _instantiate(
                    "source",
                    name,
                    split[0]["plugin"],
                    split[1],
                    registry.sources,
                    problems,
                    secrets,
                )
            continue
        route = core.path or f"/hooks/{name}"
        if not route.startswith("/"):
            problems.append(
                f"sources.{name}.path: must start with '/', e.g. path = \"/hooks/{name}\""
            )
            continue
        if route in paths.values():
            other = next(n for n, p in paths.items() if p == route)
            problems.append(f"sources.{name}.path: {route} is already the path of sources.{other}")
            continue
        instance = _instantiate(
            "source", name, core.plugin, split[1], registry.sources, problems, secrets
        )
        if instance is not None:
            sources[name] = instance
            paths[name] = route
    return sources, paths


def _sinks(
    tables: dict[str, Any], registry: Registry, problems: list[str], secrets: set[str]
) -> dict[str, SinkSpec]:
    sinks: dict[str, SinkSpec] = {}
    for name, table in tables.items():
        split = _split(table, f"sinks.{name}", {"plugin", "delivery"}, problems)
        if split is None:
            continue
        core = _structure(split[0], _SinkTable, f"sinks.{name}", problems)
        plugin = core.plugin if core is not None else split[0].get("plugin")
        if not isinstance(plugin, str):
            continue
        # the plugin's options are checked even when the delivery table is wrong
        instance = _instantiate("sink", name, plugin, split[1], registry.sinks, problems, secrets)
        if instance is not None and core is not None:
            sinks[name] = SinkSpec(sink=instance, delivery=core.delivery)
    return sinks


def _routes(value: Any, sources: set[str], sinks: set[str], problems: list[str]) -> list[Route]:
    if not isinstance(value, list):
        problems.append("routes: expected an array of tables ([[routes]])")
        return []
    routes = []
    for index, table in enumerate(value):
        path = f"routes[{index}]"
        route = _structure(table, Route, path, problems)
        if route is None:
            continue
        for sink in route.sinks:
            if sink not in sinks:
                match = closest(sink, sinks)
                fix = f"did you mean {match!r}?" if match else f"define [sinks.{sink}]"
                problems.append(f"{path}.sinks: no sink named {sink!r} ({fix})")
        for pattern in route.sources:
            if pattern == OPERATOR_SOURCE:  # eventrouter's own events (operator_events.py)
                continue
            if not any(fnmatch.fnmatchcase(name, pattern) for name in sources):
                match = closest(pattern, sources)
                hint = f" (did you mean {match!r}?)" if match else ""
                problems.append(f"{path}.sources: {pattern!r} matches no configured source{hint}")
        if route.filter:
            try:
                route._compiled = jmespath.compile(route.filter)
            except jmespath.exceptions.JMESPathError as exc:
                problems.append(f"{path}.filter: invalid JMESPath expression: {exc}")
        routes.append(route)
    return routes


def _console(table: Any, problems: list[str], secrets: set[str]) -> ConsoleConfig:
    """``[console]``; a host other than loopback needs credentials (users or tokens)."""
    if table is None:
        return ConsoleConfig(enabled=False)
    _collect_strings(table.get("tokens") if isinstance(table, dict) else None, secrets)
    _collect_strings(table.get("viewer_tokens") if isinstance(table, dict) else None, secrets)
    console: ConsoleConfig | None = _structure(table, ConsoleConfig, "console", problems)
    if console is None:
        return ConsoleConfig(enabled=False)
    for name, user in console.users.items():
        # a table's values are not walked by _structure's validation: each user is checked here
        found = list(_validate(user, f"console.users.{name}"))
        problems.extend(found)
        if not _NAME.match(name):
            problems.append(
                f"console.users.{name}: names may hold letters, digits, '_', '.' and '-' only"
            )
        if not user.password_hash.startswith("scrypt$"):
            problems.append(
                f"console.users.{name}.password_hash: not a password hash (make one with "
                "`eventrouter console hash-password` and paste what it prints)"
            )
    if console.enabled and console.open_access and console.host not in _LOOPBACK:
        problems.append(
            f"console.host: {console.host!r} is reachable from other machines, so the console "
            'needs credentials: add [console.users.NAME] with password_hash = "..." (from '
            '`eventrouter console hash-password`) or tokens = ["${EVENTROUTER_CONSOLE_TOKEN}"], '
            'or set host = "127.0.0.1"'
        )
    return console
