"""``eventrouter sinks``: each sink's circuit, queue and last error; pause and resume a sink.

The pause is written in the store, so a running ``serve`` or ``worker`` (another process, on
any machine sharing a Redis store) stops claiming for the sink within a second; ingest goes on
and every delivery stays pending until ``eventrouter sinks resume``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import click

from eventrouter.circuit import CircuitState, ControlBusy, SinkControl, update_control
from eventrouter.cli_support import (
    EXAMPLE_CONFIG,
    _examples,
    _load_store_access,
    _shown,
    _with_store,
    config_option,
)
from eventrouter.config import StoreAccess
from eventrouter.store import Store

__all__ = ["sinks"]


def _when(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat()


def _row(name: str, control: SinkControl, depth: dict[str, int]) -> dict[str, Any]:
    return {
        "sink": name,
        "state": "paused" if control.paused else control.state.value,
        "circuit": control.state.value,
        "open_since": _when(control.opened_at),
        "next_probe_at": _when(control.probe_at) if control.state is CircuitState.OPEN else None,
        "paused_since": _when(control.paused_at) if control.paused else None,
        "reason": control.reason if control.paused else None,
        "pending": depth.get("pending", 0),
        "inflight": depth.get("inflight", 0),
        "dead": depth.get("dead", 0),
        "last_error": control.last_error,
    }


def _line(row: dict[str, Any]) -> str:
    state = row["state"]
    if row["paused_since"]:
        state = f"paused since {row['paused_since'][:19]}"
        if row["reason"]:
            state += f" ({_shown(row['reason'])})"
    elif row["circuit"] == "open":
        state = f"open since {row['open_since'][:19]}, next probe {row['next_probe_at'][11:19]}"
    elif row["circuit"] == "half_open":
        state = f"half-open (probing), open since {row['open_since'][:19]}"
    error = f"  last error: {_shown(row['last_error'])}" if row["last_error"] else ""
    return (
        f"{row['sink']}: {state}; {row['pending']} pending, {row['inflight']} in flight, "
        f"{row['dead']} dead{error}"
    )


@click.group(
    invoke_without_command=True,
    short_help="Each sink's state; pause and resume a sink.",
    epilog=_examples(
        f"eventrouter sinks {EXAMPLE_CONFIG}",
        f"eventrouter sinks {EXAMPLE_CONFIG} --json",
        f'eventrouter sinks pause crm {EXAMPLE_CONFIG} --reason "CRM upgrade"',
        f"eventrouter sinks resume crm {EXAMPLE_CONFIG}",
    ),
)
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@click.pass_context
def sinks(ctx: click.Context, config_path: Path, as_json: bool) -> None:
    """Each sink's state (closed, open since, half-open, paused), pending, in flight, dead and
    last error; `sinks pause NAME` and `sinks resume NAME` hold and release a sink."""
    if ctx.invoked_subcommand is not None:
        return
    config = _load_store_access(config_path)

    async def action(store: Store) -> list[dict[str, Any]]:
        depth = await store.queue_depth()
        return [
            _row(name, await store.get_control(name), depth.get(name, {})) for name in config.sinks
        ]

    for row in _with_store(config, action):
        click.echo(json.dumps(row) if as_json else _line(row))


def _change(
    config: StoreAccess, name: str, change: Callable[[SinkControl], SinkControl | None]
) -> SinkControl | None:
    """Apply ``change`` to the sink's record; None when it left the record as it was."""
    if name not in config.sinks:
        raise click.ClickException(
            f"no sink named {name!r} (configured: {', '.join(config.sinks) or 'none'})"
        )

    async def action(store: Store) -> SinkControl | None:
        try:
            _, written = await update_control(store, name, change)
        except ControlBusy as exc:
            raise click.ClickException(f"{exc}; try again") from None
        return written

    return _with_store(config, action)


@sinks.command(
    short_help="Stop delivering to sink NAME; ingest goes on.",
    epilog=_examples(f'eventrouter sinks pause crm {EXAMPLE_CONFIG} --reason "CRM upgrade"'),
)
@config_option
@click.argument("name")
@click.option("--reason", help="Why (shown by `eventrouter sinks` and in the operator event).")
def pause(config_path: Path, name: str, reason: str | None) -> None:
    """Stop delivering to sink NAME; its deliveries stay pending and ingest goes on."""
    config = _load_store_access(config_path)
    now = time.time()
    done = _change(
        config,
        name,
        lambda c: (
            attrs.evolve(c, paused=True, paused_at=now, reason=reason)
            if not c.paused or c.reason != reason
            else None
        ),
    )
    click.echo(f"sink {name} paused" if done else f"sink {name} was paused already")


@sinks.command(epilog=_examples(f"eventrouter sinks resume crm {EXAMPLE_CONFIG}"))
@config_option
@click.argument("name")
def resume(config_path: Path, name: str) -> None:
    """Deliver to sink NAME again (the backlog drains oldest first)."""
    config = _load_store_access(config_path)
    done = _change(
        config,
        name,
        lambda c: attrs.evolve(c, paused=False, paused_at=None, reason=None) if c.paused else None,
    )
    click.echo(f"sink {name} resumed" if done else f"sink {name} was not paused")
