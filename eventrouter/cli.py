"""The ``eventrouter`` command."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal

import click

from eventrouter import __version__, query
from eventrouter.cli_sinks import sinks
from eventrouter.cli_support import (
    DELIVERED_BY,
    EXAMPLE_CONFIG,
    _examples,
    _load,
    _load_store_access,
    _plural,
    _shown,
    _utc,
    _with_store,
    config_option,
)
from eventrouter.config import (
    StoreAccess,
    closest,
    default_secrets_warning,
)
from eventrouter.errors import StoreUnavailable
from eventrouter.plugins import FAILED_PLUGINS, create_plugin_manager, plugin_infos
from eventrouter.query import BulkAction, EventFilter, EventPage, PageRequest, QueryError
from eventrouter.store import Attempt, DeliveryState, Store, StoredEvent

__all__ = ["cli"]


@click.group(
    epilog=_examples(
        f"eventrouter check {EXAMPLE_CONFIG}",
        f"eventrouter serve {EXAMPLE_CONFIG}",
        f"eventrouter events {EXAMPLE_CONFIG}",
        "eventrouter COMMAND --help     (each command's options and examples)",
    )
)
@click.version_option(__version__, prog_name="eventrouter")
def cli() -> None:
    """Receive, verify, normalise, store and route webhooks."""


log_options = [
    click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="Log lines as text, or one JSON object per line (for a log collector).",
    ),
    click.option(
        "--log-level",
        type=click.Choice(["debug", "info", "warning", "error"]),
        default="info",
        show_default=True,
        help="The least severe log lines written (info: one line per accepted event).",
    ),
]


def _with_log_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(log_options):
        fn = option(fn)
    return fn


@cli.command(
    epilog=_examples(
        f"eventrouter serve {EXAMPLE_CONFIG}",
        f"eventrouter serve {EXAMPLE_CONFIG} --port 9000 --log-format json",
        f"eventrouter serve {EXAMPLE_CONFIG} --no-deliver     (an ingest node)",
    )
)
@config_option
@click.option("--host", help="Override [server] host.")
@click.option("--port", type=int, help="Override [server] port.")
@click.option(
    "--no-deliver",
    is_flag=True,
    help="Receive and store only; leave delivery to `eventrouter worker`.",
)
@click.option(
    "--delivery-processes",
    type=click.IntRange(min=0),
    help="Override [server] delivery_processes: deliver in this many worker processes of "
    "serve's own (0: in serve's process).",
)
@_with_log_options
def serve(
    config_path: Path,
    host: str | None,
    port: int | None,
    no_deliver: bool,
    delivery_processes: int | None,
    log_format: str,
    log_level: str,
) -> None:
    """Receive webhooks and deliver them to the sinks."""
    _run_server(
        config_path,
        host=host,
        port=port,
        log_format=log_format,
        log_level=log_level,
        ingest=True,
        deliver=not no_deliver,
        delivery_processes=delivery_processes,
    )


@cli.command(
    short_help="Deliver stored events to the sinks, without receiving webhooks.",
    epilog=_examples(
        "eventrouter worker --config eventrouter.toml --port 9100",
        "curl http://127.0.0.1:9100/readyz",
    ),
)
@config_option
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Where /healthz, /readyz and /metrics listen.",
)
@click.option(
    "--port",
    type=int,
    default=0,
    show_default=True,
    help="Port for /healthz, /readyz and /metrics (0: any free port).",
)
@click.option(
    "--parent",
    type=int,
    hidden=True,
    help="The serve process that started this one (a delivery process): stop when it is gone.",
)
@_with_log_options
def worker(
    config_path: Path,
    host: str,
    port: int,
    parent: int | None,
    log_format: str,
    log_level: str,
) -> None:
    """Deliver stored events to the sinks, without receiving webhooks (scale delivery apart from ingest)."""
    _run_server(
        config_path,
        host=host,
        port=port,
        log_format=log_format,
        log_level=log_level,
        ingest=False,
        deliver=True,
        parent=parent,
    )


def _run_server(
    config_path: Path,
    *,
    host: str | None,
    port: int | None,
    log_format: str,
    log_level: str,
    ingest: bool,
    deliver: bool,
    delivery_processes: int | None = None,
    parent: int | None = None,
) -> None:
    from eventrouter.app import create_app
    from eventrouter.console import ConsoleListenError
    from eventrouter.dispatch import SinkStartFailed
    from eventrouter.logs import setup_logging
    from eventrouter.loops import loop_name, run
    from eventrouter.redact import Redactor
    from eventrouter.runner import PortUnavailable
    from eventrouter.runner import serve as serve_app

    config, pm = _load(config_path)
    setup_logging(fmt=log_format, level=log_level, redactor=Redactor(config.secrets))
    log = logging.getLogger("eventrouter")
    public = default_secrets_warning(config, config_path)
    if public:
        log.warning("%s", public)
    host = host or config.server.host
    port = config.server.port if port is None else port
    if delivery_processes is None:
        delivery_processes = config.server.delivery_processes
    children = delivery_processes if ingest and deliver else 0
    app = create_app(config, pm=pm, ingest=ingest, deliver=deliver and not children)
    if ingest and config.console.enabled:
        from eventrouter.app import METRICS, STORE
        from eventrouter.console import console_listener

        app.cleanup_ctx.append(console_listener(config, store=app[STORE], metrics=app[METRICS]))
    supervisor = None
    if children:
        from eventrouter.app import METRICS
        from eventrouter.supervisor import KILL_MARGIN, DeliveryProcesses, worker_command

        supervisor = DeliveryProcesses(
            worker_command(
                config_path,
                host=host,
                port=config.server.delivery_port,
                log_format=log_format,
                log_level=log_level,
            ),
            count=children,
            grace=float(config.server.shutdown_timeout) + KILL_MARGIN,
            metrics=app[METRICS],
        )
        app.cleanup_ctx.append(supervisor.context())
    if parent is not None:
        from eventrouter.supervisor import exit_with_parent

        app.cleanup_ctx.append(exit_with_parent(parent))
    role = (
        f"receiving, delivering in {children} process{'es' if children > 1 else ''} of its own"
        if children
        else "receiving and delivering"
        if ingest and deliver
        else "receiving only"
        if ingest
        else "delivering only"
    )

    def started(bound: int) -> None:
        for name, path in config.source_paths.items() if ingest else ():
            log.info(
                "source %s (%s) at http://%s:%d%s",
                name,
                config.sources[name].type_name,
                host,
                bound,
                path,
            )
        for name, spec in config.sinks.items() if deliver and not children else ():
            log.info(
                "sink %s (%s), concurrency %d", name, spec.sink.type_name, spec.delivery.concurrency
            )
        log.info(
            "eventrouter %s %s, listening on http://%s:%d (%s store, %s event loop)",
            __version__,
            role,
            host,
            bound,
            config.store.backend,
            loop_name(asyncio.get_running_loop()),
        )

    try:
        run(
            serve_app(
                app,
                host=host,
                port=port,
                options=config.server,
                on_started=started,
                on_stopping=supervisor.stopping if supervisor is not None else None,
            ),
            event_loop=config.server.event_loop,
        )
    except ConsoleListenError as exc:  # the console's own port ([console] port)
        raise click.ClickException(str(exc)) from None
    except PortUnavailable as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} (change [server] port or pass --port)"
        ) from None
    except StoreUnavailable as exc:
        raise click.ClickException(f"store: {exc} (check [store] in the configuration)") from None
    except SinkStartFailed as exc:
        raise click.ClickException(str(exc)) from None


@cli.group(
    invoke_without_command=True,
    short_help="Run the operator console alone; hash a console password.",
    epilog=_examples(
        f"eventrouter console {EXAMPLE_CONFIG}",
        "eventrouter console hash-password",
    ),
)
@config_option
@_with_log_options
@click.pass_context
def console(ctx: click.Context, config_path: Path, log_format: str, log_level: str) -> None:
    """Run the operator console alone (next to Redis workers); see README "Console"."""
    if ctx.invoked_subcommand is not None:
        return
    from eventrouter.app import METRICS
    from eventrouter.console import create_console_app
    from eventrouter.logs import setup_logging
    from eventrouter.loops import loop_name, run
    from eventrouter.metrics import Metrics
    from eventrouter.redact import Redactor
    from eventrouter.runner import PortUnavailable
    from eventrouter.runner import serve as serve_app

    config, _ = _load(config_path)
    setup_logging(fmt=log_format, level=log_level, redactor=Redactor(config.secrets))
    host, port = config.console.host, config.console.port

    def started(bound: int) -> None:
        logging.getLogger("eventrouter").info(
            "console at http://%s:%d (%s event loop)",
            host,
            bound,
            loop_name(asyncio.get_running_loop()),
        )

    app = create_console_app(config)
    app[METRICS] = Metrics()  # the connection guard's counts (the console serves no /metrics)
    try:
        run(
            serve_app(app, host=host, port=port, options=config.server, on_started=started),
            event_loop=config.server.event_loop,
        )
    except PortUnavailable as exc:
        raise click.ClickException(
            f"console: cannot listen on {host}:{port}: {exc.strerror or exc} (change [console] port)"
        ) from None


@console.command(
    "hash-password",
    short_help="Print a password's hash for the config.",
    epilog=_examples("eventrouter console hash-password --password 'long phrase'"),
)
@click.password_option("--password", help="The password (asked for when not given).")
def hash_password(password: str) -> None:
    """Print a hash of a password for [console.users.NAME] password_hash."""
    from eventrouter.console import hash_password as make_hash

    click.echo(make_hash(password))


@cli.command(
    short_help="Validate the configuration without serving.",
    epilog=_examples(
        f"eventrouter check {EXAMPLE_CONFIG}", "EVENTROUTER_CONFIG=prod.toml eventrouter check"
    ),
)
@config_option
def check(config_path: Path) -> None:
    """Validate the configuration, plugin options included, without serving: every problem is
    reported at once, with its path."""
    config, _ = _load(config_path)
    click.echo(
        f"{config_path}: OK — {_plural(len(config.sources), 'source')}, "
        f"{_plural(len(config.sinks), 'sink')}, {_plural(len(config.routes), 'route')}, "
        f"{config.store.backend} store"
    )
    public = default_secrets_warning(config, config_path)
    if public:
        click.echo(f"warning: {public}", err=True)


@cli.command(
    short_help="List installed plugins, their versions, types and hooks.",
    epilog=_examples("eventrouter plugins", "eventrouter plugins --json"),
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins(as_json: bool) -> None:
    """List installed plugins: distribution, version, source/sink types and hooks."""
    pm = create_plugin_manager()
    infos = plugin_infos(pm)
    if as_json:
        click.echo(json.dumps([info.to_dict() for info in infos], indent=2))
        return
    for info in infos:
        version = (
            f"{info.distribution} {info.version}" if info.distribution else "(registered directly)"
        )
        click.echo(f"{info.name}  [{version}]")
        if info.sources:
            click.echo(f"  sources: {', '.join(info.sources)}")
        if info.sinks:
            click.echo(f"  sinks:   {', '.join(info.sinks)}")
        click.echo(f"  hooks:   {', '.join(info.hooks) or '-'}")
    for name, error in FAILED_PLUGINS.items():
        click.echo(f"{name}  [failed to load] {error}", err=True)


def _event_lines(stored: StoredEvent) -> list[str]:
    event = stored.event
    lines = [
        f"{_utc(event.received_at)} {event.id} {event.source} {_shown(event.type)} "
        f"({_shown(event.provider_type)})"
    ]
    for record in stored.deliveries:
        detail = f" — {_shown(record.last_error)}" if record.last_error else ""
        due = (
            f" next at {_utc(record.next_attempt_at, '%H:%M:%S')}"
            if record.next_attempt_at and record.state == "pending"
            else ""
        )
        lines.append(
            f"    {record.sink}: {record.state}, {_plural(record.attempts, 'attempt')}{due}{detail}"
        )
    if not stored.deliveries:
        lines.append("    (no route matched)")
    return lines


def _stored_dict(stored: StoredEvent) -> dict[str, Any]:
    return {
        "event": stored.event.redacted().to_dict(),
        "deliveries": [
            {
                "sink": r.sink,
                "state": r.state.value,
                "attempts": r.attempts,
                "next_attempt_at": r.next_attempt_at.isoformat() if r.next_attempt_at else None,
                "last_error": r.last_error,
            }
            for r in stored.deliveries
        ],
    }


class _Moment(click.ParamType[datetime, Any]):
    """An ISO 8601 time (``2026-01-31``, ``2026-01-31T10:00``, UTC unless it says otherwise) or a
    span back from now (``90m``, ``24h``, ``7d``)."""

    name = "time"
    spans: ClassVar[dict[str, int]] = {"s": 1, "m": 60, "h": 3600, "d": 86400}

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        unit = self.spans.get(text[-1:])
        if unit and text[:-1].isdigit():
            return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * unit)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{value!r} is neither an ISO 8601 time nor a span like 24h or 7d", param, ctx
            )
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


_STATE_OPTION = click.option(
    "--state",
    type=click.Choice([s.value for s in DeliveryState]),
    help="Only events with a delivery in this state.",
)

#: the query layer's filters, as options (``events``, ``dlq list``, ``dlq retry``, ``replay``)
_FILTER_OPTIONS = [
    click.option("--source", help="Only events from this source."),
    click.option(
        "--type", "type_glob", help="Only events whose type matches this glob ('call.*')."
    ),
    _STATE_OPTION,
    click.option("--since", type=_Moment(), help="Received at or after (ISO 8601 or 24h, 7d)."),
    click.option("--until", type=_Moment(), help="Received before (ISO 8601 or 24h, 7d)."),
    click.option("--key", "idempotency_key", help="Only the event with this idempotency key."),
    click.option("--contact", help="A phone in any format with its country code, or an email."),
    click.option("--call", "call_id", help="Only events about this call id."),
    click.option("--campaign", "campaign_id", help="Only events of this campaign id."),
    click.option("--text", help="Text the provider's raw payload contains (SQLite store only)."),
]


_SINK_OPTION = click.option("--sink", help="Only events (and deliveries) to this sink.")


def _with_filter_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The filter options but ``--sink`` (which ``replay`` declares its own way)."""
    for option in reversed(_FILTER_OPTIONS):
        fn = option(fn)
    return fn


def _with_dead_letter_filters(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The filter options but ``--state`` (dead letters are dead) and ``--sink``."""
    for option in reversed(_FILTER_OPTIONS):
        if option is not _STATE_OPTION:
            fn = option(fn)
    return fn


def _with_bulk_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation."),
        click.option("--dry-run", is_flag=True, help="Print the plan only."),
        click.option(
            "--resume", "resume_id", metavar="ACTION_ID", help="Finish an interrupted action."
        ),
        click.option(
            "--batch", default=500, show_default=True, help="Events per store round trip."
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


#: a delivering process that has not left a heartbeat for this long is not counted as running
HEARTBEAT_STALE = timedelta(minutes=1)


def _run_bulk(
    config: StoreAccess,
    kind: Literal["replay", "dlq_retry"],
    where: EventFilter,
    *,
    yes: bool,
    dry_run: bool,
    resume_id: str | None,
    batch: int,
) -> int:
    """Plan, confirm and carry out a bulk action; how many deliveries it queued."""
    try:
        if resume_id:
            action = BulkAction.resume(kind, where, sinks=config.sinks, action_id=resume_id)
        else:
            action = BulkAction.start(kind, where, sinks=config.sinks)
    except QueryError as exc:
        raise click.ClickException(f"--{exc.field.replace('_', '-')}: {exc.message}") from None

    async def plan_it(store: Store) -> tuple[query.DeliveryPlan, datetime | None]:
        return await query.delivery_plan(store, action.where), await store.last_heartbeat()

    plan, heartbeat = _with_store(config, plan_it)
    doing = "replay" if kind == "replay" else "retry"
    sinks = ", ".join(f"{sink} ({n})" for sink, n in plan.by_sink.items() if sink in action.sinks)
    click.echo(
        f"plan: {doing} {_plural(plan.total, 'delivery', 'deliveries')}"
        + (f" to {sinks}" if sinks else ""),
        err=True,
    )
    orphaned = sorted(sink for sink in plan.by_sink if sink not in action.sinks)
    if orphaned:
        click.echo(
            f"left as they are: {'dead letters' if kind == 'dlq_retry' else 'deliveries'} "
            f"of sinks no longer configured ({', '.join(orphaned)})",
            err=True,
        )
    if dry_run:
        return 0
    if plan.total and not yes:
        click.confirm("go ahead?", abort=True, err=True)
    click.echo(
        f"action {action.id} (if interrupted, run the same command with --resume {action.id})",
        err=True,
    )
    with click.progressbar(length=plan.total, label=doing, file=sys.stderr) as bar:
        count = _with_store(
            config, lambda store: query.run_bulk(store, action, batch=batch, progress=bar.update)
        )
    _delivery_note(heartbeat)
    return count


def _delivery_note(heartbeat: datetime | None) -> None:
    """Say where delivery happens, and warn when no delivering process was seen lately."""
    click.echo(
        "delivery happens in a running `eventrouter serve` or `eventrouter worker`", err=True
    )
    if heartbeat is None or datetime.now(UTC) - heartbeat > HEARTBEAT_STALE:
        seen = f"last seen {heartbeat:%Y-%m-%d %H:%M:%S} UTC" if heartbeat else "none seen"
        click.echo(
            f"warning: no serve or worker is delivering right now ({seen}): "
            "the queued deliveries wait until one runs",
            err=True,
        )


def _filter(options: dict[str, Any]) -> EventFilter:
    """The EventFilter of the filter options; a wrong value is a message naming its option."""
    try:
        return EventFilter.build(
            source=options.pop("source"),
            type=options.pop("type_glob"),
            state=options.pop("state", None),
            sink=options.pop("sink"),
            since=options.pop("since"),
            until=options.pop("until"),
            idempotency_key=options.pop("idempotency_key"),
            contact=options.pop("contact"),
            call_id=options.pop("call_id"),
            campaign_id=options.pop("campaign_id"),
            text=options.pop("text"),
        )
    except QueryError as exc:
        raise click.ClickException(f"--{exc.field.replace('_', '-')}: {exc.message}") from None


def _attempt_line(attempt: Attempt) -> str:
    status = f" HTTP {attempt.status}" if attempt.status else ""
    error = f" — {_shown(attempt.error)}" if attempt.error else ""
    return (
        f"    #{attempt.number} {attempt.sink} {_utc(attempt.started_at)} "
        f"{attempt.duration * 1000:.0f} ms {attempt.outcome.value} ({attempt.trigger.value})"
        f"{status}{error}"
    )


def _print_page(page: EventPage, *, as_json: bool, oldest_first: bool = False) -> None:
    shown = reversed(page.events) if oldest_first else page.events
    for stored in shown:
        if as_json:
            click.echo(json.dumps(_stored_dict(stored), ensure_ascii=False))
        else:
            click.echo("\n".join(_event_lines(stored)))
    if page.next_cursor:
        click.echo(f"more: --cursor {page.next_cursor}", err=True)


@cli.command(
    short_help="Recent events and the state of their deliveries.",
    epilog=_examples(
        f"eventrouter events {EXAMPLE_CONFIG}",
        f"eventrouter events {EXAMPLE_CONFIG} --source altur --type 'call.*'",
        f"eventrouter events {EXAMPLE_CONFIG} --contact +5215512345678 --since 7d",
        f"eventrouter events {EXAMPLE_CONFIG} --state dead --sink archive",
        f"eventrouter events {EXAMPLE_CONFIG} EVENT_ID --json",
    ),
)
@config_option
@click.argument("event_id", required=False)
@click.option("--limit", default=20, show_default=True, help="How many events per page.")
@click.option("--cursor", help="Where the previous page ended (it prints it).")
@_SINK_OPTION
@_with_filter_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines (credentials redacted).")
def events(
    config_path: Path,
    event_id: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
    **filters: Any,
) -> None:
    """Recent events and the state of their deliveries, newest first (or one event, by id,
    with every delivery attempt)."""
    config = _load_store_access(config_path)
    where = _filter(filters)

    if event_id:
        found = _with_store(config, lambda store: query.event_with_attempts(store, event_id))
        if found is None:
            raise click.ClickException(f"no event {event_id} in the store")
        stored, attempts = found
        if as_json:
            record = _stored_dict(stored)
            record["attempts"] = [a.to_dict() for a in attempts]
            click.echo(json.dumps(record, ensure_ascii=False))
            return
        click.echo("\n".join(_event_lines(stored)))
        if attempts:
            click.echo("  attempts:")
            click.echo("\n".join(_attempt_line(a) for a in attempts))
        return
    page = _with_store(
        config,
        lambda store: query.find_events(store, where, PageRequest(limit=limit, cursor=cursor)),
    )
    _print_page(page, as_json=as_json)


@cli.command(
    short_help="Everything about one contact or campaign, in time order.",
    epilog=_examples(
        f"eventrouter timeline {EXAMPLE_CONFIG} --contact +5215512345678",
        f"eventrouter timeline {EXAMPLE_CONFIG} --contact ana@example.com --json",
        f"eventrouter timeline {EXAMPLE_CONFIG} --campaign cmp_2026_12",
    ),
)
@config_option
@click.option("--contact", help="A phone in any format with its country code, or an email.")
@click.option("--campaign", "campaign_id", help="A campaign id.")
@click.option("--limit", default=50, show_default=True, help="How many events per page.")
@click.option("--cursor", help="Where the previous page ended (older events).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines (credentials redacted).")
def timeline(
    config_path: Path,
    contact: str | None,
    campaign_id: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """Everything that happened to a contact or in a campaign, across providers, in time order
    (the latest LIMIT events; --cursor for earlier ones)."""
    if (contact is None) == (campaign_id is None):
        raise click.UsageError("give --contact or --campaign (one of them)")
    config = _load_store_access(config_path)
    page = _with_store(
        config,
        lambda store: query.timeline(
            store,
            contact=contact,
            campaign_id=campaign_id,
            page=PageRequest(limit=limit, cursor=cursor),
        ),
    )
    _print_page(page, as_json=as_json, oldest_first=True)
    if not page.events and not as_json:
        click.echo("nothing recorded")


@cli.group(
    epilog=_examples(
        f"eventrouter dlq list {EXAMPLE_CONFIG}",
        f"eventrouter dlq retry {EXAMPLE_CONFIG} --sink archive --since 24h --dry-run",
        f"eventrouter dlq retry {EXAMPLE_CONFIG} --sink archive --yes",
    )
)
def dlq() -> None:
    """Dead letters: deliveries given up on after their last attempt."""


@dlq.command(
    "list",
    short_help="List dead letters, newest event first.",
    epilog=_examples(
        f"eventrouter dlq list {EXAMPLE_CONFIG}",
        f"eventrouter dlq list {EXAMPLE_CONFIG} --sink archive --json",
        f"eventrouter dlq list {EXAMPLE_CONFIG} --sink crm --campaign cmp_2026_12 --since 24h",
    ),
)
@config_option
@_SINK_OPTION
@_with_dead_letter_filters
@click.option(
    "--limit", default=100, show_default=True, help="How many events' dead letters per page."
)
@click.option("--cursor", help="Where the previous page ended (it prints it).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def dlq_list(
    config_path: Path, limit: int, cursor: str | None, as_json: bool, **filters: Any
) -> None:
    """List dead letters, newest event first: all of them, or those of the events matching the
    filters (the same as `dlq retry` takes)."""
    config = _load_store_access(config_path)
    where = _filter(filters)
    page = _with_store(
        config,
        lambda store: query.find_dead_letters(
            store, where, PageRequest(limit=limit, cursor=cursor)
        ),
    )
    for letter in page.letters:
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "event_id": letter.event_id,
                        "source": letter.source,
                        "type": letter.type,
                        "sink": letter.sink,
                        "attempts": letter.attempts,
                        "reason": letter.reason,
                        "dead_at": letter.dead_at.isoformat(),
                    }
                )
            )
        else:
            click.echo(
                f"{_utc(letter.dead_at)} {letter.event_id} -> {letter.sink} "
                f"({_shown(letter.type)}, {_plural(letter.attempts, 'attempt')}): "
                f"{_shown(letter.reason)}"
            )
    if page.next_cursor:
        click.echo(f"more: --cursor {page.next_cursor}", err=True)
    if not page.letters and not as_json:
        click.echo("no dead letters")


@dlq.command(
    "retry",
    short_help="Queue dead letters for delivery again.",
    epilog=_examples(
        f"eventrouter dlq retry {EXAMPLE_CONFIG}",
        f"eventrouter dlq retry {EXAMPLE_CONFIG} --sink archive --since 24h --dry-run",
        f"eventrouter dlq retry {EXAMPLE_CONFIG} --sink archive --yes",
        f"eventrouter dlq retry {EXAMPLE_CONFIG} EVENT_ID EVENT_ID",
    ),
)
@config_option
@_SINK_OPTION
@_with_filter_options
@_with_bulk_options
@click.argument("event_ids", nargs=-1)
def dlq_retry(
    config_path: Path,
    event_ids: tuple[str, ...],
    yes: bool,
    dry_run: bool,
    resume_id: str | None,
    batch: int,
    **filters: Any,
) -> None:
    """Queue dead letters for delivery again: the EVENT_IDS given, or every one matching the
    filters (all of them without any), after showing the plan. This command only queues them:
    a running `eventrouter serve` or `eventrouter worker` on the same store delivers them."""
    config = _load_store_access(config_path)
    where = _filter(filters)
    sink = where.sink
    if sink and sink not in config.sinks:
        raise _no_sink(sink, config)
    if not event_ids:
        count = _run_bulk(
            config, "dlq_retry", where, yes=yes, dry_run=dry_run, resume_id=resume_id, batch=batch
        )
        if not dry_run:
            click.echo(f"{_plural(count, 'dead letter')} queued for delivery again")
        return

    async def action(store: Store) -> tuple[int, list[str]]:
        # only to sinks that still exist: nothing would ever deliver to a removed one
        count = 0
        for name in [sink] if sink else list(config.sinks):
            count += await store.retry_dead_letters(sink=name, event_ids=event_ids)
        if sink:  # only that sink's were asked for: the others are not reported
            return count, []
        left = await store.list_dead_letters(limit=100_000)
        wanted = set(event_ids)
        orphaned = sorted(
            {
                letter.sink
                for letter in left
                if letter.sink not in config.sinks and letter.event_id in wanted
            }
        )
        return count, orphaned

    count, orphaned = _with_store(config, action)
    click.echo(f"{_plural(count, 'dead letter')} queued for delivery again")
    if count:
        click.echo(f"{DELIVERED_BY} {'it' if count == 1 else 'them'})", err=True)
    if orphaned:
        click.echo(
            f"left as they are: dead letters of sinks no longer configured ({', '.join(orphaned)})",
            err=True,
        )


def _no_sink(name: str, config: StoreAccess) -> click.ClickException:
    match = closest(name, config.sinks)
    hint = f"did you mean {match!r}? " if match else ""
    return click.ClickException(
        f"--sink: no sink named {name!r} ({hint}configured: {', '.join(config.sinks)})"
    )


@cli.command(
    short_help="Queue stored events for delivery again.",
    epilog=_examples(
        f"eventrouter replay EVENT_ID {EXAMPLE_CONFIG}",
        f"eventrouter replay EVENT_ID {EXAMPLE_CONFIG} --sink archive",
        f"eventrouter replay {EXAMPLE_CONFIG} --campaign cmp_2026_12 --sink crm --dry-run",
    ),
)
@config_option
@click.argument("event_id", required=False)
@click.option(
    "--sink",
    "sinks",
    multiple=True,
    help="One event: deliver to this sink (repeatable; default: the event's sinks). "
    "Many: only their deliveries to this sink.",
)
@_with_filter_options
@_with_bulk_options
def replay(
    config_path: Path,
    event_id: str | None,
    sinks: tuple[str, ...],
    yes: bool,
    dry_run: bool,
    resume_id: str | None,
    batch: int,
    **filters: Any,
) -> None:
    """Deliver stored events again: EVENT_ID, or every event matching the filters (after
    showing the plan). This command only queues them: a running `eventrouter serve` or
    `eventrouter worker` on the same store delivers them."""
    config = _load_store_access(config_path)
    unknown = [s for s in sinks if s not in config.sinks]
    if unknown:
        raise _no_sink(unknown[0], config)
    if event_id is None:
        if len(sinks) > 1:
            raise click.ClickException("--sink: a replay of many events takes one --sink")
        filters["sink"] = sinks[0] if sinks else None
        where = _filter(filters)
        if not where.used():
            raise click.ClickException(
                "give an EVENT_ID or at least one filter (--since 24h, --source ...): "
                "a replay of every stored event is never what was meant"
            )
        count = _run_bulk(
            config, "replay", where, yes=yes, dry_run=dry_run, resume_id=resume_id, batch=batch
        )
        if not dry_run:
            click.echo(f"{_plural(count, 'delivery', 'deliveries')} queued again")
        return

    async def action(store: Store) -> tuple[int, datetime | None]:
        stored = await store.get_event(event_id)
        if stored is None:
            raise click.ClickException(f"no event {event_id} in the store")
        chosen = list(sinks) or [r.sink for r in stored.deliveries if r.sink in config.sinks]
        if not chosen:
            raise click.ClickException(f"event {event_id} had no sinks; name one with --sink")
        return await store.replay(event_id, chosen), await store.last_heartbeat()

    count, heartbeat = _with_store(config, action)
    click.echo(f"event {event_id} queued for {_plural(count, 'sink')}")
    _delivery_note(heartbeat)


@cli.command(
    short_help="Sign a sample payload as SOURCE would and post it.",
    epilog=_examples(
        f"eventrouter send altur examples/payloads/altur-call-ended.json {EXAMPLE_CONFIG}",
        f"eventrouter send exotel examples/payloads/exotel-call-status.form {EXAMPLE_CONFIG}",
    ),
)
@config_option
@click.argument("source_name", metavar="SOURCE")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--url", help="Where to post; default: the source's path on [server] host and port.")
@click.option(
    "--content-type", help="Default: application/json for .json files, else form-encoded."
)
def send(
    config_path: Path, source_name: str, file: Path, url: str | None, content_type: str | None
) -> None:
    """Sign FILE the way SOURCE expects (with its configured secret) and post it to the server."""
    import aiohttp

    config, _ = _load(config_path)
    source = config.sources.get(source_name)
    if source is None:
        match = closest(source_name, config.sources)
        hint = f"did you mean {match!r}? " if match else ""
        raise click.ClickException(
            f"no source named {source_name!r} ({hint}configured: {', '.join(config.sources)})"
        )
    body = file.read_bytes()
    content_type = content_type or (
        "application/json" if file.suffix == ".json" else "application/x-www-form-urlencoded"
    )
    try:
        signed = source.sign(body, content_type=content_type)
    except NotImplementedError as exc:
        raise click.ClickException(str(exc)) from None
    if url is None:
        host = "127.0.0.1" if config.server.host in ("0.0.0.0", "::", "") else config.server.host  # noqa: S104
        url = f"http://{host}:{config.server.port}{config.source_paths[source_name]}"
    headers = {"Content-Type": content_type, **signed.headers}

    async def post() -> tuple[int, str]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=body, headers=headers, params=signed.query) as response,
        ):
            return response.status, await response.text()

    try:
        status, text = asyncio.run(post())
    except aiohttp.ClientError as exc:
        raise click.ClickException(
            f"cannot post to {url}: {exc} (is `eventrouter serve` running?)"
        ) from None
    click.echo(f"{status} {text}")
    if status >= 300:
        sys.exit(1)


@cli.command(
    "new-plugin",
    epilog=_examples(
        "eventrouter new-plugin mydialer --kind source",
        "eventrouter new-plugin ticketing --kind sink --directory ~/src",
    ),
)
@click.argument("name")
@click.option(
    "--kind", type=click.Choice(["source", "sink"]), required=True, help="What the plugin provides."
)
@click.option(
    "--directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="Where to create the package directory.",
)
def new_plugin(name: str, kind: str, directory: Path) -> None:
    """Write a complete, tested plugin package: eventrouter-NAME."""
    from eventrouter.scaffold import ScaffoldError, write_plugin

    try:
        target = write_plugin(name, kind=kind, directory=directory)
    except ScaffoldError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {target}")
    click.echo(f"next: pip install -e '{target}[test]' && pytest {target}")


# `eventrouter sinks` lives in its own module, which imports the helpers above


cli.add_command(sinks)
