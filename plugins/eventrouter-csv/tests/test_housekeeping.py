"""gzip of closed days, retention, and the background task's lifetime."""

from __future__ import annotations

import asyncio
import gzip
import os
import time
from datetime import UTC, datetime, timedelta

import pandas as pd

from eventrouter_csv import DEFAULT_COLUMNS
from eventrouter_csv.housekeeping import housekeep
from eventrouter_csv.locking import LOCK_NAME

HEADER = ",".join(DEFAULT_COLUMNS)
NOW = datetime.now(UTC)
TODAY = NOW.date()


def _on_day(event, days_ago, event_id):
    return event.evolve(id=event_id, received_at=NOW - timedelta(days=days_ago))


def _listing(root):
    """The archive's files, but for the lock file every sink keeps in it."""
    files = (p for p in root.rglob("*") if p.is_file() and p.name != LOCK_NAME)
    return sorted(p.relative_to(root).as_posix() for p in files)


def _day(days_ago):
    return (TODAY - timedelta(days=days_ago)).isoformat()


async def test_closed_days_are_compressed_and_old_ones_deleted(make_sink, tmp_path, call_ended):
    sink = await make_sink(compress_after_days=2, retention_days=5)
    for days_ago in (0, 1, 2, 3, 5, 6, 40):
        await sink.deliver(_on_day(call_ended, days_ago, f"evt_{days_ago}"))
    root = tmp_path / "archive"
    done = await sink.housekeep(today=TODAY)
    assert sorted(done.compressed) == sorted([f"{_day(2)}.csv", f"{_day(3)}.csv", f"{_day(5)}.csv"])
    assert sorted(done.deleted) == sorted([f"{_day(6)}.csv", f"{_day(40)}.csv"])
    assert _listing(root) == sorted(
        [
            f"{_day(0)}.csv",
            f"{_day(1)}.csv",
            f"{_day(2)}.csv.gz",
            f"{_day(3)}.csv.gz",
            f"{_day(5)}.csv.gz",
        ]
    )
    frame = pd.read_csv(root / f"{_day(3)}.csv.gz", dtype=str, keep_default_na=False)
    assert list(frame.columns) == list(DEFAULT_COLUMNS)
    assert list(frame["event_id"]) == ["evt_3"]
    assert list(frame["contact_phone"]) == ["+521234567890"]
    # today's and yesterday's files were not touched, and today's still takes rows
    await sink.deliver(_on_day(call_ended, 0, "evt_0b"))
    today = (root / f"{_day(0)}.csv").read_text().splitlines()
    assert today[0] == HEADER
    assert [line.split(",")[0] for line in today[1:]] == ["evt_0", "evt_0b"]
    # nothing more to do the second time
    again = await sink.housekeep(today=TODAY)
    assert (again.compressed, again.deleted) == ([], [])


async def test_a_late_row_for_a_compressed_day_is_merged(make_sink, tmp_path, call_ended):
    sink = await make_sink(compress_after_days=1)
    await sink.deliver(_on_day(call_ended, 2, "evt_first"))
    await sink.housekeep(today=TODAY)
    root = tmp_path / "archive"
    assert _listing(root) == [f"{_day(2)}.csv.gz"]
    # a retry of an event received that day reopens a plain file for it
    await sink.deliver(_on_day(call_ended, 2, "evt_late"))
    assert _listing(root) == [f"{_day(2)}.csv", f"{_day(2)}.csv.gz"]
    await sink.housekeep(today=TODAY)
    assert _listing(root) == [f"{_day(2)}.csv.gz"]
    with gzip.open(root / f"{_day(2)}.csv.gz", "rt", encoding="utf-8", newline="") as file:
        lines = file.read().splitlines()
    assert lines[0] == HEADER
    assert lines.count(HEADER) == 1
    assert [line.split(",")[0] for line in lines[1:]] == ["evt_first", "evt_late"]


async def test_a_torn_day_is_repaired_before_it_is_compressed(make_sink, tmp_path, call_ended):
    sink = await make_sink(compress_after_days=1)
    await sink.deliver(_on_day(call_ended, 3, "evt_whole"))
    root = tmp_path / "archive"
    with open(root / f"{_day(3)}.csv", "ab") as file:
        file.write(b"evt_torn,2024-")
    await sink.housekeep(today=TODAY)
    frame = pd.read_csv(root / f"{_day(3)}.csv.gz", dtype=str, keep_default_na=False)
    assert list(frame["event_id"]) == ["evt_whole"]


async def test_continuation_files_are_compressed_and_deleted_with_their_day(
    make_sink, tmp_path, call_ended
):
    root = tmp_path / "archive"
    root.mkdir()
    for days_ago in (2, 9):
        (root / f"{_day(days_ago)}.csv").write_text("event_id,type\nevt_old,call.ended\n")
    sink = await make_sink()  # no background run: housekeeping is run below, when wanted

    def run():
        return housekeep(root, sink.template, today=TODAY, compress_after_days=1, retention_days=5)

    for days_ago in (2, 9):
        await sink.deliver(_on_day(call_ended, days_ago, f"evt_{days_ago}"))
    assert f"{_day(2)}.2.csv" in _listing(root)
    done = run()
    assert sorted(done.compressed) == [f"{_day(2)}.2.csv", f"{_day(2)}.csv"]
    assert sorted(done.deleted) == [f"{_day(9)}.2.csv", f"{_day(9)}.csv"]
    assert _listing(root) == [f"{_day(2)}.2.csv.gz", f"{_day(2)}.csv.gz"]
    frame = pd.read_csv(root / f"{_day(2)}.2.csv.gz", dtype=str, keep_default_na=False)
    assert list(frame.columns) == list(DEFAULT_COLUMNS)
    assert list(frame["event_id"]) == ["evt_2"]
    # a late row of that day still goes to the continuation, never into the old columns' .gz
    await sink.deliver(_on_day(call_ended, 2, "evt_late"))
    assert _listing(root) == [f"{_day(2)}.2.csv", f"{_day(2)}.2.csv.gz", f"{_day(2)}.csv.gz"]
    run()
    frame = pd.read_csv(root / f"{_day(2)}.2.csv.gz", dtype=str, keep_default_na=False)
    assert list(frame["event_id"]) == ["evt_2", "evt_late"]
    old = pd.read_csv(root / f"{_day(2)}.csv.gz", dtype=str, keep_default_na=False)
    assert list(old.columns) == ["event_id", "type"]


async def test_retention_covers_reports_and_stale_temporaries(make_sink, tmp_path, call_ended):
    sink = await make_sink(retention_days=2)
    root = tmp_path / "archive"
    reports = root / "reports"
    reports.mkdir(parents=True)
    old = time.time() - 3 * 86400
    for name in ("evt_old-report.csv", "evt_new-report.csv", "evt_x-report.csv.part"):
        (reports / name).write_text("x")
    os.utime(reports / "evt_old-report.csv", (old, old))
    os.utime(reports / "evt_x-report.csv.part", (old, old))
    (root / "notes.txt").write_text("not ours")
    done = await sink.housekeep(today=TODAY)
    assert sorted(done.deleted) == ["reports/evt_old-report.csv", "reports/evt_x-report.csv.part"]
    assert _listing(root) == ["notes.txt", "reports/evt_new-report.csv"]


async def test_subdirectories_left_empty_are_removed(make_sink, tmp_path, call_ended):
    sink = await make_sink(path="{date}/{source}.csv", retention_days=1)
    await sink.deliver(_on_day(call_ended, 5, "evt_old"))
    await sink.deliver(_on_day(call_ended, 0, "evt_new"))
    await sink.housekeep(today=TODAY)
    root = tmp_path / "archive"
    assert sorted(p.relative_to(root).as_posix() for p in root.iterdir()) == [LOCK_NAME, _day(0)]


async def test_housekeeping_runs_at_start_and_stops_at_close(make_sink, tmp_path):
    root = tmp_path / "archive"
    root.mkdir()
    (root / f"{_day(10)}.csv").write_text(HEADER + "\n")
    (root / f"{_day(0)}.csv").write_text(HEADER + "\n")
    sink = await make_sink(retention_days=3)
    task = sink._housekeeping
    assert task is not None
    for _ in range(100):
        if not (root / f"{_day(10)}.csv").exists():
            break
        await asyncio.sleep(0.02)
    assert _listing(root) == [f"{_day(0)}.csv"]
    assert not task.done()  # sleeping until the next hourly run
    await sink.close()
    assert task.cancelled()
    assert sink._housekeeping is None


async def test_no_background_task_without_housekeeping(make_sink):
    sink = await make_sink()
    assert sink._housekeeping is None
