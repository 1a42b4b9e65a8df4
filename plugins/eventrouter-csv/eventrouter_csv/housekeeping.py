"""Housekeeping of closed days: gzip them after a while, delete them after longer.

Only files whose day (from the ``path`` template) is before today (UTC) are touched, so the
file being appended to is never moved under the writer.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path, PurePosixPath

from attrs import define, field

from eventrouter_csv.files import compress_file
from eventrouter_csv.paths import PathTemplate

__all__ = ["REPORTS_DIRECTORY", "Housekeeping", "housekeep"]

#: the directory, beside each day's file, that downloaded campaign reports go to
REPORTS_DIRECTORY = "reports"
#: a partial download or compression older than this was left by a crash
_STALE_TEMPORARY = 86400.0


@define
class Housekeeping:
    """What one housekeeping run did, as paths relative to the archive directory."""

    compressed: list[str] = field(factory=list)
    deleted: list[str] = field(factory=list)


def housekeep(
    root: Path,
    template: PathTemplate,
    *,
    today: date,
    compress_after_days: int | None,
    retention_days: int | None,
    now: float | None = None,
) -> Housekeeping:
    """Delete days older than ``retention_days``, then gzip days at least ``compress_after_days`` old."""
    done = Housekeeping()
    if not root.is_dir():
        return done
    now = time.time() if now is None else now
    keep_from = today - timedelta(days=retention_days) if retention_days else None
    compress_before = today - timedelta(days=(compress_after_days or 0) - 1)
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        relative = PurePosixPath(path.relative_to(root).as_posix())
        if relative.name.endswith((".gz.tmp", ".part")):
            if now - path.stat().st_mtime > _STALE_TEMPORARY:
                path.unlink()
                done.deleted.append(str(relative))
            continue
        day = template.day_of(relative)
        if day is None:
            if (
                retention_days
                and relative.parent.name == REPORTS_DIRECTORY
                and now - path.stat().st_mtime > retention_days * 86400
            ):
                path.unlink()
                done.deleted.append(str(relative))
            continue
        if day >= today:
            continue
        if keep_from is not None and day < keep_from:
            path.unlink()
            done.deleted.append(str(relative))
        elif compress_after_days and day < compress_before and relative.suffix != ".gz":
            compress_file(path)
            done.compressed.append(str(relative))
    for relative_name in done.deleted:
        _remove_empty_parents(root, root / relative_name)
    return done


def _remove_empty_parents(root: Path, path: Path) -> None:
    """Remove the directories a deletion left empty, up to (not including) ``root``."""
    parent = path.parent
    while parent != root and root in parent.parents:
        try:
            parent.rmdir()
        except OSError:
            return
        parent = parent.parent
