"""Helpers the ``eventrouter`` command's modules share (cli.py, cli_sinks.py): loading the
config or only its store, running a store action, and how listings and ``--help`` read."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from eventrouter.config import Config, StoreAccess, load_config, load_store_access
from eventrouter.errors import ConfigError, StoreUnavailable
from eventrouter.plugins import Registry, create_plugin_manager
from eventrouter.query import QueryError
from eventrouter.store import Store, create_store

# the underscore names are the CLI modules' own, not API: they keep the names cli.py had
__all__ = [
    "DELIVERED_BY",
    "EXAMPLE_CONFIG",
    "T",
    "_examples",
    "_invalid",
    "_load",
    "_load_store_access",
    "_plural",
    "_shown",
    "_utc",
    "_with_store",
    "config_option",
]

T = TypeVar("T")

config_option = click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default="eventrouter.toml",
    show_default=True,
    envvar="EVENTROUTER_CONFIG",
    help="The configuration file (or set EVENTROUTER_CONFIG).",
)


def _invalid(config_path: Path, exc: ConfigError) -> click.ClickException:
    if len(exc.problems) == 1 and exc.problems[0].startswith(f"{config_path}: "):
        return click.ClickException(exc.problems[0])  # the file itself: missing, not TOML...
    lines = "\n".join(f"  - {problem}" for problem in exc.problems)
    return click.ClickException(f"invalid configuration in {config_path}:\n{lines}")


def _load(config_path: Path) -> tuple[Config, Any]:
    pm = create_plugin_manager()
    try:
        registry = Registry.collect(pm)
        return load_config(config_path, registry), pm
    except ConfigError as exc:
        raise _invalid(config_path, exc) from None


def _load_store_access(config_path: Path) -> StoreAccess:
    """The store and the sink names only: these commands need no source's or sink's secret.

    They only look at what is stored, so a SQLite file that is not there is a mistake (a
    mistyped ``[store] path``, another directory), not an empty store to create."""
    try:
        access = load_store_access(config_path)
    except ConfigError as exc:
        raise _invalid(config_path, exc) from None
    if access.store.backend == "sqlite":
        path = (access.base_dir / access.store.path).resolve()
        if not path.exists():
            raise click.ClickException(
                f"no store at {path} ([store] path in {config_path}): check the path; "
                "`eventrouter serve` creates the store when it first starts"
            )
    return access


#: what ``replay`` and ``dlq retry`` add (on stderr, beside the count on stdout): they only
#: queue, and delivery needs a process running
DELIVERED_BY = "(a running `eventrouter serve` or `eventrouter worker` on this store delivers"


def _plural(count: int, word: str, plural: str | None = None) -> str:
    """``1 sink``, ``2 sinks``."""
    return f"{count} {word if count == 1 else plural or word + 's'}"


def _utc(moment: datetime, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A stored time as people read it, with its zone: ``2026-12-02 04:58:53 UTC``."""
    return f"{moment.astimezone(UTC).strftime(fmt)} UTC"


def _examples(*lines: str) -> str:
    """A ``--help`` epilog; ``\b`` keeps click from re-wrapping the command lines."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def _with_store(config: StoreAccess, action: Callable[[Store], Awaitable[T]]) -> T:
    async def run() -> T:
        store = create_store(config.store, base_dir=config.base_dir)
        try:
            await store.open()
        except StoreUnavailable as exc:
            raise click.ClickException(
                f"store: {exc} (check [store] in the configuration)"
            ) from None
        try:
            return await action(store)
        except QueryError as exc:  # a filter this store cannot answer, named as its option
            raise click.ClickException(f"--{exc.field.replace('_', '-')}: {exc.message}") from None
        finally:
            await store.close()

    return asyncio.run(run())


EXAMPLE_CONFIG = "--config examples/eventrouter.toml"


def _shown(text: str) -> str:
    """``text`` safe for a terminal: a sender chose it, so control characters (escape sequences
    that would move the cursor or retitle the window) are shown escaped, not obeyed."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
