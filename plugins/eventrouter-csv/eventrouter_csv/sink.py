"""Sink type ``csv``: archive every event as one row of a daily CSV file, durably."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath

from attrs import field, frozen

from eventrouter import (
    Duration,
    Event,
    PermanentError,
    Sink,
    SinkContext,
)
from eventrouter_csv.batching import GroupCommit, run_locked
from eventrouter_csv.columns import (
    COLUMNS,
    DEFAULT_COLUMNS,
    archive_view,
    encode_row,
    encode_rows,
    render_row,
)
from eventrouter_csv.files import archive_files, make_directories, repair_file
from eventrouter_csv.housekeeping import REPORTS_DIRECTORY, Housekeeping, housekeep
from eventrouter_csv.locking import LOCK_NAME, ArchiveLock
from eventrouter_csv.paths import PathTemplate
from eventrouter_csv.reports import (
    ReportPolicy,
    ReportRefused,
    download_report,
    parse_report_url,
    report_name,
)

__all__ = ["HOUSEKEEPING_INTERVAL", "CSVOptions", "CSVSink"]

#: seconds between housekeeping runs (the first runs at start)
HOUSEKEEPING_INTERVAL = 3600.0
#: a batch renders this many rows, then lets the event loop run other work
RENDER_SLICE = 16


@frozen
class CSVOptions:
    #: the archive's directory, relative to the config file's directory
    directory: str
    #: file of each row under ``directory``; placeholders {date}, {type}, {source}
    path: str = "{date}.csv"
    #: the columns, in order (default: every column but idempotency_key and specversion)
    columns: list[str] = field(factory=lambda: list(DEFAULT_COLUMNS))
    #: gzip a day's file once it is this many days old (unset: never)
    compress_after_days: int | None = None
    #: delete a day's file (and reports) once it is more than this many days old (unset: never)
    retention_days: int | None = None
    #: fetch data.campaign.report_url into reports/ beside the day's file
    download_reports: bool = False
    #: hosts reports may come from ("*.example.com" globs); empty: any public host
    report_hosts: list[str] = field(factory=list)
    #: largest report accepted, in bytes
    report_max_bytes: int = 50 * 1024 * 1024
    #: longest a report download may take (keep it below the sink's delivery.timeout)
    report_timeout: Duration = Duration(20)
    #: allow report hosts that resolve to private, loopback, link-local or reserved addresses
    allow_private_report_hosts: bool = False


class CSVSink(Sink):
    """Rows are group-committed (written and fsynced together) before ``deliver`` returns."""

    type_name = "csv"
    Options = CSVOptions

    def __init__(self, name: str, options: CSVOptions) -> None:
        super().__init__(name, options)
        self.template = PathTemplate(options.path)
        self.columns = tuple(options.columns)
        self.header = encode_row(self.columns)
        self.report_policy = ReportPolicy(
            hosts=tuple(options.report_hosts),
            max_bytes=options.report_max_bytes,
            timeout=float(options.report_timeout),
            allow_private=options.allow_private_report_hosts,
        )
        self._housekeeping: asyncio.Task[None] | None = None

    def check(self) -> Iterable[str]:
        options = self.options
        if not options.directory.strip():
            yield 'directory: required, e.g. directory = "archive"'
        for problem in self.template.problems():
            yield f"path: {problem}"
        if not options.columns:
            yield "columns: list at least one column"
        unknown = [name for name in options.columns if name not in COLUMNS]
        if unknown:
            yield f"columns: unknown {', '.join(map(repr, unknown))}; known: {', '.join(COLUMNS)}"
        repeated = sorted({name for name in options.columns if options.columns.count(name) > 1})
        if repeated:
            yield f"columns: listed twice: {', '.join(map(repr, repeated))}"
        for option in ("compress_after_days", "retention_days"):
            value = getattr(options, option)
            if value is not None and value < 1:
                yield f"{option}: must be at least 1 (leave it out to turn it off)"
        housekeeping = options.compress_after_days or options.retention_days
        if housekeeping and not self.template.problems() and not self.template.has_date:
            yield "path: compress_after_days and retention_days need {date} in the path"
        if options.report_max_bytes < 1:
            yield "report_max_bytes: must be positive"
        if options.report_timeout <= 0:
            yield "report_timeout: must be positive"
        for host in options.report_hosts:
            if not host or "/" in host or ":" in host:
                yield f"report_hosts: {host!r} is not a host name (no scheme, port or path)"

    async def start(self, context: SinkContext) -> None:
        await super().start(context)
        #: the archive directory
        self.root = (context.base_dir / self.options.directory).resolve()
        self.logger = context.logger.getChild(f"csv.{self.name}")
        self._lock = ArchiveLock()
        await asyncio.to_thread(_open_root, self.root, self._lock)
        try:
            await (
                self.repair_archive()
            )  # the first lock taken: a filesystem without locks fails here
        except BaseException:
            await self._lock.close()
            raise
        self.writer = GroupCommit(
            header=self.header,
            lock=self._lock,
            logger=self.logger,
            extension=self.template.extension,
        )
        self.writer.start()
        if self.options.compress_after_days or self.options.retention_days:
            self._housekeeping = asyncio.create_task(
                self._housekeeping_loop(), name=f"csv-housekeeping-{self.name}"
            )

    async def close(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
            self._housekeeping = None
        writer = getattr(self, "writer", None)
        if writer is not None:
            await writer.close()
        lock = getattr(self, "_lock", None)
        if lock is not None:
            await lock.close()

    async def repair_archive(self) -> list[Path]:
        """Cut the torn last record off every archive file (done at start); the files repaired.

        A crash can tear the last row of a file that never gets another row (a closed day, a
        rare ``{type}``): each file the path template can produce is repaired now, not only
        when it is next appended to. Only each file's tail is read.
        """
        pattern = self.template.pattern()
        depth = self.options.path.count("/") + 1

        def repair() -> list[tuple[Path, int, bool]]:
            done = []
            for path in archive_files(
                self.root,
                lambda relative: relative != LOCK_NAME and pattern.fullmatch(relative) is not None,
                depth,
            ):
                try:
                    removed = repair_file(path)
                except OSError as exc:
                    # the append will repair it (or report why it cannot)
                    self.logger.warning(
                        "csv: cannot check %s for a torn last record: %s",
                        path,
                        exc.strerror or type(exc).__name__,
                    )
                    continue
                if removed:
                    done.append((path, removed, path.exists()))
            return done

        repaired = await run_locked(self._lock, repair)
        for path, removed, kept in repaired:
            self.logger.warning(
                "csv: cut a torn last record (%d bytes) off %s%s",
                removed,
                path,
                "" if kept else "; nothing whole was left, so the file was removed",
            )
        return [path for path, _, _ in repaired]

    def path_for(
        self, event: Event, *, resolved: dict[tuple[date, str, str], Path] | None = None
    ) -> Path:
        """The file ``event``'s row is appended to; never outside the archive directory.

        ``resolved``: the paths found so far for this batch, by the template's values (rendering
        and resolving a path costs more than the row; the events of a batch share a handful of
        files).
        """
        day = event.received_at.astimezone(UTC).date()
        values = (day, event.type, event.source)
        if resolved is not None and (known := resolved.get(values)) is not None:
            return known
        relative = self.template.render(day=day, event_type=event.type, source=event.source)
        root = self.root
        path = (root / relative).resolve()
        if root not in path.parents:
            raise PermanentError(f"path {relative!r} leads outside the archive directory")
        if resolved is not None:
            resolved[values] = path
        return path

    async def deliver(self, event: Event) -> None:
        event = archive_view(event)
        path = self.path_for(event)
        report_file = await self._fetch_report(event, path.parent)
        line = encode_row(render_row(event, self.columns, report_file=report_file))
        await self.writer.append(path, line)

    async def deliver_batch(self, events: Sequence[Event]) -> dict[str, Exception]:
        """Archive many events with one write and one fsync per file; the events refused."""
        refused: dict[str, Exception] = {}
        views = [archive_view(event) for event in events]
        paths: dict[str, Path] = {}
        resolved: dict[tuple[date, str, str], Path] = {}
        for view in views:
            try:
                paths[view.id] = self.path_for(view, resolved=resolved)
            except PermanentError as exc:
                refused[view.id] = exc
        views = [view for view in views if view.id in paths]
        reports: list[str | BaseException | None] = [None] * len(views)
        if self.options.download_reports:
            reports = await asyncio.gather(
                *(self._fetch_report(view, paths[view.id].parent) for view in views),
                return_exceptions=True,
            )
        rows: dict[Path, list[list[str]]] = {}
        written: dict[Path, list[str]] = {}
        for n, (view, report) in enumerate(zip(views, reports, strict=True), 1):
            if isinstance(report, BaseException):
                if not isinstance(report, Exception):
                    raise report  # a cancellation: not the event's
                refused[view.id] = report  # as deliver would have raised it
                continue
            path = paths[view.id]
            rows.setdefault(path, []).append(render_row(view, self.columns, report_file=report))
            written.setdefault(path, []).append(view.id)
            if n % RENDER_SLICE == 0:
                await asyncio.sleep(0)  # a big batch lets requests in between its rows
        lines = {path: [encode_rows(cells)] for path, cells in rows.items()}
        for path, error in (await self.writer.append_many(lines)).items():
            refused.update(dict.fromkeys(written[path], error))
        return refused

    async def _fetch_report(self, event: Event, beside: Path) -> str | None:
        """Download the event's campaign report; its path relative to the archive, or None.

        Network trouble raises RetryableError before the row is written (no duplicate row on
        retry); a refused or impossible download is logged and the row written without it.
        """
        campaign = event.data.campaign
        if not self.options.download_reports or campaign is None or not campaign.report_url:
            return None
        try:
            url = parse_report_url(campaign.report_url)
            destination = beside / REPORTS_DIRECTORY / report_name(event.id, url)
            saved = await download_report(self.context.http, url, destination, self.report_policy)
        except ReportRefused as exc:
            self.logger.warning("csv: report of %s not downloaded: %s", event.id, exc)
            return None
        return PurePosixPath(saved.relative_to(self.root)).as_posix()

    async def housekeep(self, *, today: date | None = None) -> Housekeeping:
        """Compress and delete closed days now (the background task runs this hourly)."""
        done = await run_locked(
            self._lock,
            lambda: housekeep(
                self.root,
                self.template,
                today=today or datetime.now(UTC).date(),
                compress_after_days=self.options.compress_after_days,
                retention_days=self.options.retention_days,
            ),
        )
        if done.compressed or done.deleted:
            self.logger.info(
                "csv: compressed %d and deleted %d archive files",
                len(done.compressed),
                len(done.deleted),
            )
        return done

    async def _housekeeping_loop(self) -> None:
        while True:
            try:
                await self.housekeep()
            except Exception:
                self.logger.exception("csv: housekeeping failed; trying again in an hour")
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)


def _open_root(root: Path, lock: ArchiveLock) -> None:
    """Create the archive directory durably (an existing file there is an error); open its lock."""
    make_directories(root)
    root.mkdir(exist_ok=True)
    lock.open(root)
