"""Group commit, fsync before return, torn-record repair and a header written once."""

from __future__ import annotations

import asyncio
import builtins
import csv
import gzip
import io
import os
import stat
import threading
from datetime import UTC, datetime

import pandas as pd
import pytest

import eventrouter_csv.batching
from eventrouter import RetryableError
from eventrouter_csv import DEFAULT_COLUMNS
from eventrouter_csv.columns import encode_row, render_row
from eventrouter_csv.files import repair_tail
from eventrouter_csv.locking import LOCK_NAME

HEADER = ",".join(DEFAULT_COLUMNS)


def _numbered(event, count, *, prefix="evt_"):
    return [event.evolve(id=f"{prefix}{n:03d}") for n in range(count)]


async def test_concurrent_deliveries_share_batches(
    make_sink, tmp_path, read_rows, call_ended, monkeypatch
):
    fsyncs = []
    real_fsync = eventrouter_csv.files.os.fsync

    def counting_fsync(fd):
        fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(eventrouter_csv.files.os, "fsync", counting_fsync)
    sink = await make_sink()
    fsyncs.clear()  # the archive directory's creation at start
    events = _numbered(call_ended, 50)
    await asyncio.gather(*(sink.deliver(event) for event in events))
    rows = read_rows(tmp_path / "archive" / "2024-12-19.csv")
    assert sorted(row["event_id"] for row in rows) == [event.id for event in events]
    # 50 deliveries, far fewer batches: the first row goes alone, the rest gather behind it
    assert 1 <= sink.writer.batches <= 5
    assert len(fsyncs) <= 2 * sink.writer.batches  # one file fsync (+ one directory on creation)


class _LoggedFile:
    """A file object of files.py that logs each write with the fd and inode it goes to."""

    def __init__(self, file, log):
        self._file = file
        self._log = log

    def write(self, data):
        fd = self._file.fileno()
        self._log.append(("write", fd, os.fstat(fd).st_ino, bytes(data)))
        return self._file.write(data)

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        self._file.__enter__()
        return self

    def __exit__(self, *exc_info):
        return self._file.__exit__(*exc_info)


@pytest.fixture
def disk_log(monkeypatch):
    """What reached the disk, in order: ``("write", fd, inode, bytes)``, and after each fsync
    returned ``("fsync", fd, inode, is_directory, the file's content on disk then)``."""
    log = []
    real_fsync = os.fsync

    def logged_open(*args, **kwargs):
        return _LoggedFile(builtins.open(*args, **kwargs), log)

    def logged_fsync(fd):
        real_fsync(fd)
        status = os.fstat(fd)
        directory = stat.S_ISDIR(status.st_mode)
        content = None if directory else os.pread(fd, status.st_size, 0)
        log.append(("fsync", fd, status.st_ino, directory, content))

    monkeypatch.setattr(eventrouter_csv.files, "open", logged_open, raising=False)
    monkeypatch.setattr(eventrouter_csv.files.os, "fsync", logged_fsync)
    return log


async def test_each_row_is_fsynced_before_its_delivery_returns(
    make_sink, tmp_path, disk_log, call_ended, campaign_completed
):
    sink = await make_sink(path="{source}/{date}.csv")
    root = tmp_path / "archive"
    started = len(disk_log)

    async def deliver(event):
        await sink.deliver(event)
        disk_log.append(("returned", event.id))

    waves = [
        [*_numbered(call_ended, 12, prefix="a"), *_numbered(campaign_completed, 12, prefix="b")],
        [*_numbered(call_ended, 6, prefix="c"), *_numbered(campaign_completed, 6, prefix="d")],
    ]
    for wave in waves:  # the first creates both files, the second appends to them
        await asyncio.gather(*(deliver(event) for event in wave))
    log = disk_log[started:]
    returned = {entry[1]: index for index, entry in enumerate(log) if entry[0] == "returned"}
    events = [event for wave in waves for event in wave]
    assert sorted(returned) == sorted(event.id for event in events)

    files = {
        "altur": root / "altur" / "2024-12-19.csv",
        "exotel": root / "exotel" / "2024-12-19.csv",
    }
    for event in events:
        path = files[event.source]
        inode = path.stat().st_ino
        (row,) = [
            line
            for line in path.read_bytes().splitlines(keepends=True)
            if line.startswith(f"{event.id},".encode())
        ]
        done = returned[event.id]
        writes = [
            (index, entry[1])
            for index, entry in enumerate(log[:done])
            if entry[0] == "write" and entry[2] == inode and row in entry[3]
        ]
        assert writes, f"{event.id}: its row was not written before deliver() returned"
        written, fd = writes[0]
        synced = [
            index
            for index, entry in enumerate(log[:done])
            if index > written
            and entry[0] == "fsync"
            and (entry[1], entry[2], entry[3]) == (fd, inode, False)
            and row in entry[4]
        ]
        assert synced, f"{event.id}: deliver() returned before the file holding its row was fsynced"

    # a new file's directory entry is made durable before its first delivery returns, and so
    # is a new subdirectory's entry in the archive directory
    directory_syncs = [
        (index, entry[2]) for index, entry in enumerate(log) if entry[0] == "fsync" and entry[3]
    ]
    for source, path in files.items():
        inode = path.stat().st_ino
        created = min(i for i, entry in enumerate(log) if entry[0] == "write" and entry[2] == inode)
        first_return = min(returned[event.id] for event in events if event.source == source)
        parent = path.parent.stat().st_ino
        assert any(
            created < index < first_return and node == parent for index, node in directory_syncs
        )
        assert any(
            index < first_return and node == root.stat().st_ino for index, node in directory_syncs
        )
    # the second wave created nothing: no directory was fsynced for it
    second = min(returned[event.id] for event in waves[1])
    first_done = max(returned[event.id] for event in waves[0])
    assert not [index for index, _ in directory_syncs if first_done < index < second]


async def test_one_batch_feeds_several_files(
    make_sink, tmp_path, read_rows, call_ended, campaign_completed
):
    sink = await make_sink(path="{type}/{date}.csv")
    days = [datetime(2024, 12, d, 8, 0, tzinfo=UTC) for d in (18, 19, 20)]
    events = [
        template.evolve(id=f"evt_{template.type}_{day.day}_{n}", received_at=day)
        for template in (call_ended, campaign_completed)
        for day in days
        for n in range(4)
    ]
    await asyncio.gather(*(sink.deliver(event) for event in events))
    assert sink.writer.batches <= 3
    root = tmp_path / "archive"
    for template in (call_ended, campaign_completed):
        for day in days:
            path = root / template.type / f"{day.date().isoformat()}.csv"
            assert path.read_text().splitlines().count(HEADER) == 1
            rows = read_rows(path)
            assert sorted(row["event_id"] for row in rows) == [
                f"evt_{template.type}_{day.day}_{n}" for n in range(4)
            ]
            assert {row["type"] for row in rows} == {template.type}


async def test_a_file_that_cannot_be_written_fails_only_its_rows(
    make_sink, tmp_path, read_rows, call_ended, campaign_completed
):
    sink = await make_sink(path="{source}/{date}.csv")
    root = tmp_path / "archive"
    (root / "exotel").write_text("a file where a directory should be")
    results = await asyncio.gather(
        sink.deliver(call_ended), sink.deliver(campaign_completed), return_exceptions=True
    )
    assert results[0] is None
    assert isinstance(results[1], RetryableError)
    assert "cannot write 2024-12-19.csv" in results[1].message
    assert [row["event_id"] for row in read_rows(root / "altur" / "2024-12-19.csv")] == [
        "evt_call_ended"
    ]


async def test_deliver_returns_only_after_the_batch_is_written(
    make_sink, tmp_path, call_ended, monkeypatch
):
    release = threading.Event()
    real_append = eventrouter_csv.batching.append_lines

    def slow_append(path, header, lines, **options):
        assert release.wait(5)
        return real_append(path, header, lines, **options)

    monkeypatch.setattr(eventrouter_csv.batching, "append_lines", slow_append)
    sink = await make_sink()
    delivery = asyncio.create_task(sink.deliver(call_ended))
    await asyncio.sleep(0.1)
    assert not delivery.done()
    assert not (tmp_path / "archive" / "2024-12-19.csv").exists()
    release.set()
    await asyncio.wait_for(delivery, 5)
    assert "evt_call_ended" in (tmp_path / "archive" / "2024-12-19.csv").read_text()


async def test_header_is_written_once_across_restarts(make_sink, tmp_path, read_rows, call_ended):
    first = await make_sink()
    await first.deliver(call_ended.evolve(id="evt_a"))
    await first.close()
    second = await make_sink()
    await second.deliver(call_ended.evolve(id="evt_b"))
    await second.close()
    third = await make_sink()
    await third.deliver(call_ended.evolve(id="evt_c"))
    path = tmp_path / "archive" / "2024-12-19.csv"
    lines = path.read_text().splitlines()
    assert lines.count(HEADER) == 1
    assert lines[0] == HEADER
    assert [row["event_id"] for row in read_rows(path)] == ["evt_a", "evt_b", "evt_c"]


async def test_a_torn_batch_is_cut_off_after_a_crash(make_sink, tmp_path, read_rows, call_ended):
    first = await make_sink()
    for event in _numbered(call_ended, 2):
        await first.deliver(event)
    await first.close()
    path = tmp_path / "archive" / "2024-12-19.csv"
    whole = path.read_bytes()
    # the crash: a batch's first row reached the disk, its second only in part
    second_row = encode_row(render_row(call_ended.evolve(id="evt_003"), DEFAULT_COLUMNS))
    with open(path, "ab") as file:
        file.write(encode_row(render_row(call_ended.evolve(id="evt_002"), DEFAULT_COLUMNS)))
        file.write(second_row[: second_row.index(b"Sof") + 2] + b'", half a ro')

    second = await make_sink()
    # the core re-delivers both rows of the unfinished batch (at-least-once)
    await second.deliver(call_ended.evolve(id="evt_002"))
    await second.deliver(call_ended.evolve(id="evt_003"))

    data = path.read_bytes()
    assert data.startswith(whole)
    assert data.endswith(b"\n")
    assert b"half a ro" not in data
    rows = read_rows(path)
    assert [row["event_id"] for row in rows] == [
        "evt_000",
        "evt_001",
        "evt_002",
        "evt_002",
        "evt_003",
    ]
    assert rows[2] == rows[3]
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(frame.columns) == list(DEFAULT_COLUMNS)
    assert list(frame["event_id"]) == ["evt_000", "evt_001", "evt_002", "evt_002", "evt_003"]
    # a re-delivered event is recognisable: same event_id, same content
    assert frame[frame["event_id"] == "evt_002"].iloc[1]["call_id"] == "cll_gBoLtd02pUI50QwXkFjB"


async def test_a_torn_header_is_rewritten_once(make_sink, tmp_path, read_rows, call_ended):
    path = tmp_path / "archive" / "2024-12-19.csv"
    path.parent.mkdir(parents=True)
    path.write_bytes(HEADER[:17].encode())
    sink = await make_sink()
    await sink.deliver(call_ended)
    lines = path.read_text().splitlines()
    assert lines[0] == HEADER
    assert lines.count(HEADER) == 1
    assert [row["event_id"] for row in read_rows(path)] == ["evt_call_ended"]


def test_repair_tail_walks_back_over_long_torn_records():
    data = b"header\nrow one\n" + b"x" * 200_000
    file = io.BytesIO(data)
    assert repair_tail(file) == 200_000
    assert file.getvalue() == b"header\nrow one\n"
    nothing = io.BytesIO(b"no newline at all")
    assert repair_tail(nothing) == len(b"no newline at all")
    assert nothing.getvalue() == b""
    whole = io.BytesIO(b"a\nb\n")
    assert repair_tail(whole) == 0
    assert whole.getvalue() == b"a\nb\n"


async def test_other_columns_continue_in_a_numbered_file(
    make_sink, tmp_path, read_rows, call_ended, caplog
):
    root = tmp_path / "archive"
    root.mkdir()
    old = "event_id,type\nevt_old,call.ended\n"
    (root / "2024-12-19.csv").write_text(old)
    sink = await make_sink()
    await asyncio.gather(*(sink.deliver(event) for event in _numbered(call_ended, 3)))
    await sink.deliver(call_ended.evolve(id="evt_later"))
    # the old file is left as it was; the rows go to a file of their own, with their header
    assert (root / "2024-12-19.csv").read_text() == old
    continued = root / "2024-12-19.2.csv"
    assert continued.read_text().splitlines()[0] == HEADER
    assert [row["event_id"] for row in read_rows(continued)][-1] == "evt_later"
    assert sorted(row["event_id"] for row in read_rows(continued)) == [
        "evt_000",
        "evt_001",
        "evt_002",
        "evt_later",
    ]
    frame = pd.read_csv(continued, dtype=str, keep_default_na=False)
    assert list(frame.columns) == list(DEFAULT_COLUMNS)
    warnings = [r.getMessage() for r in caplog.records if "other columns" in r.getMessage()]
    assert len(warnings) == 1  # once, not once per batch
    assert "2024-12-19.csv" in warnings[0]
    assert "2024-12-19.2.csv" in warnings[0]
    # a restart with the same columns keeps appending to the continuation
    await sink.close()
    again = await make_sink()
    await again.deliver(call_ended.evolve(id="evt_after_restart"))
    assert read_rows(continued)[-1]["event_id"] == "evt_after_restart"
    assert sorted(p.name for p in root.iterdir()) == [
        LOCK_NAME,
        "2024-12-19.2.csv",
        "2024-12-19.csv",
    ]


async def test_each_change_of_columns_gets_the_next_number(make_sink, tmp_path, call_ended):
    root = tmp_path / "archive"
    first = await make_sink(columns=["event_id", "type"])
    await first.deliver(call_ended.evolve(id="evt_a"))
    await first.close()
    second = await make_sink(columns=["event_id", "type", "contact_phone"])
    await second.deliver(call_ended.evolve(id="evt_b"))
    await second.close()
    third = await make_sink(columns=["event_id", "contact_phone"])
    await third.deliver(call_ended.evolve(id="evt_c"))
    await third.close()
    # back to the first columns: their own file again
    fourth = await make_sink(columns=["event_id", "type"])
    await fourth.deliver(call_ended.evolve(id="evt_d"))
    assert sorted(p.name for p in root.iterdir()) == [
        LOCK_NAME,
        "2024-12-19.2.csv",
        "2024-12-19.3.csv",
        "2024-12-19.csv",
    ]
    assert (root / "2024-12-19.csv").read_text() == (
        "event_id,type\nevt_a,call.ended\nevt_d,call.ended\n"
    )
    assert (root / "2024-12-19.2.csv").read_text() == (
        "event_id,type,contact_phone\nevt_b,call.ended,+521234567890\n"
    )
    assert (
        root / "2024-12-19.3.csv"
    ).read_text() == "event_id,contact_phone\nevt_c,+521234567890\n"


async def test_a_compressed_day_of_other_columns_is_not_reopened(make_sink, tmp_path, call_ended):
    root = tmp_path / "archive"
    root.mkdir()
    with gzip.open(root / "2024-12-19.csv.gz", "wb") as file:
        file.write(b"event_id,type\nevt_old,call.ended\n")
    sink = await make_sink()
    await sink.deliver(call_ended)
    assert sorted(p.name for p in root.iterdir()) == [
        LOCK_NAME,
        "2024-12-19.2.csv",
        "2024-12-19.csv.gz",
    ]
    frame = pd.read_csv(root / "2024-12-19.2.csv", dtype=str, keep_default_na=False)
    assert list(frame["event_id"]) == ["evt_call_ended"]


async def test_deliveries_after_close_are_retryable(make_sink, call_ended):
    sink = await make_sink()
    await sink.close()
    with pytest.raises(RetryableError, match="not running"):
        await sink.deliver(call_ended)


def _tear(path, event):
    """Append the first part of ``event``'s row, as a crash in the middle of a write leaves it."""
    row = encode_row(render_row(event, DEFAULT_COLUMNS))
    with open(path, "ab") as file:
        file.write(row[: len(row) // 2])


def _valid(path, event_ids):
    """``path`` reads back whole with the csv module and with pandas."""
    assert path.read_bytes().endswith(b"\n")
    with open(path, newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    assert rows[0] == list(DEFAULT_COLUMNS)
    assert all(len(row) == len(DEFAULT_COLUMNS) for row in rows)
    assert [row[0] for row in rows[1:]] == event_ids
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(frame.columns) == list(DEFAULT_COLUMNS)
    assert list(frame["event_id"]) == event_ids


async def test_torn_files_are_repaired_at_start_without_a_new_row(
    make_sink, tmp_path, call_ended, campaign_completed, caplog
):
    first = await make_sink(path="{type}/{date}.csv")
    closed_day = call_ended.evolve(id="evt_closed", received_at=datetime(2024, 12, 1, tzinfo=UTC))
    await first.deliver(closed_day)
    await first.deliver(campaign_completed)
    await first.close()
    root = tmp_path / "archive"
    closed = root / "call.ended" / "2024-12-01.csv"
    rare = root / "campaign.completed" / "2024-12-19.csv"
    _tear(closed, call_ended.evolve(id="evt_torn_1"))
    _tear(rare, campaign_completed.evolve(id="evt_torn_2"))
    # a file that never got a whole line (torn in its first write) is removed
    never_whole = root / "call.ended" / "2024-12-02.csv"
    never_whole.write_bytes(HEADER.encode()[:40])
    # files the template cannot produce are not ours
    (root / "notes.txt").write_bytes(b"torn, but not an archive file")
    (root / "call.ended" / "reports").mkdir()
    (root / "call.ended" / "reports" / "2024-12-19.csv").write_bytes(b"a,b\n1,")
    with open(closed, newline="", encoding="utf-8") as file:
        assert len(list(csv.reader(file))[-1]) < len(DEFAULT_COLUMNS)  # the torn row

    second = await make_sink(path="{type}/{date}.csv")  # started: nothing delivered
    _valid(closed, ["evt_closed"])
    _valid(rare, ["evt_campaign_completed"])
    assert not never_whole.exists()
    assert (root / "notes.txt").read_bytes() == b"torn, but not an archive file"
    assert (root / "call.ended" / "reports" / "2024-12-19.csv").read_bytes() == b"a,b\n1,"
    repairs = sorted(r.getMessage() for r in caplog.records if "torn last record" in r.getMessage())
    assert len(repairs) == 3
    assert [line for line in repairs if "was removed" in line] == [
        f"csv: cut a torn last record (40 bytes) off {never_whole}; nothing whole was left, "
        "so the file was removed"
    ]
    # and it keeps its place as the file's next rows come
    await second.deliver(closed_day.evolve(id="evt_next"))
    _valid(closed, ["evt_closed", "evt_next"])
    assert await second.repair_archive() == []


async def test_continuation_files_are_repaired_at_start(make_sink, tmp_path, call_ended):
    root = tmp_path / "archive"
    root.mkdir()
    (root / "2024-12-19.csv").write_text("event_id,type\nevt_old,call.ended\nevt_torn,cal")
    sink = await make_sink()
    await sink.deliver(call_ended)
    await sink.close()
    _tear(root / "2024-12-19.2.csv", call_ended.evolve(id="evt_torn"))
    await make_sink()
    assert (root / "2024-12-19.csv").read_text() == "event_id,type\nevt_old,call.ended\n"
    _valid(root / "2024-12-19.2.csv", ["evt_call_ended"])


async def test_the_start_repair_waits_for_the_file_lock(make_sink, tmp_path, call_ended):
    sink = await make_sink()
    await sink.deliver(call_ended)
    path = tmp_path / "archive" / "2024-12-19.csv"
    _tear(path, call_ended.evolve(id="evt_torn"))
    async with sink._lock.tasks:  # a batch or housekeeping is at work
        repair = asyncio.create_task(sink.repair_archive())
        await asyncio.sleep(0.1)
        assert not repair.done()
        assert not path.read_bytes().endswith(b"\n")
    assert await asyncio.wait_for(repair, 5) == [path]
    _valid(path, ["evt_call_ended"])
