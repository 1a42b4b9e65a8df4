"""Group commit, fsync before return, torn-record repair and a header written once."""

from __future__ import annotations

import asyncio
import io
import threading
from datetime import UTC, datetime

import pandas as pd
import pytest

import eventrouter_csv.batching
from eventrouter.errors import RetryableError
from eventrouter_csv import DEFAULT_COLUMNS
from eventrouter_csv.columns import encode_row, render_row
from eventrouter_csv.files import repair_tail

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
    events = _numbered(call_ended, 50)
    await asyncio.gather(*(sink.deliver(event) for event in events))
    rows = read_rows(tmp_path / "archive" / "2024-12-19.csv")
    assert sorted(row["event_id"] for row in rows) == [event.id for event in events]
    # 50 deliveries, far fewer batches: the first row goes alone, the rest gather behind it
    assert 1 <= sink.writer.batches <= 5
    assert len(fsyncs) <= 2 * sink.writer.batches  # one file fsync (+ one directory on creation)


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

    def slow_append(path, header, lines):
        assert release.wait(5)
        return real_append(path, header, lines)

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


async def test_other_columns_in_an_existing_file_are_refused(make_sink, tmp_path, call_ended):
    path = tmp_path / "archive" / "2024-12-19.csv"
    path.parent.mkdir(parents=True)
    path.write_text("event_id,type\nevt_old,call.ended\n")
    sink = await make_sink()
    with pytest.raises(RetryableError, match="starts with other columns"):
        await sink.deliver(call_ended)
    assert path.read_text() == "event_id,type\nevt_old,call.ended\n"


async def test_deliveries_after_close_are_retryable(make_sink, call_ended):
    sink = await make_sink()
    await sink.close()
    with pytest.raises(RetryableError, match="not running"):
        await sink.deliver(call_ended)
