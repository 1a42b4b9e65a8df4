"""Several processes, and several sinks of one process, delivering into one archive directory."""

from __future__ import annotations

import asyncio
import errno
import gzip
import io
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import eventrouter_csv.locking
from eventrouter_csv import DEFAULT_COLUMNS
from eventrouter_csv.locking import LOCK_NAME

HEADER = ",".join(DEFAULT_COLUMNS).encode()
PROCESS = Path(__file__).with_name("archive_process.py")
#: the longest a test waits for its processes (they take a few seconds)
TIMEOUT = 120


def _start(*args, cwd):
    return subprocess.Popen(
        [sys.executable, str(PROCESS), *map(str, args)],
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _all_ready(processes):
    """Wait until every process has started its sink, then let them all go at once."""
    for process in processes:
        line = process.stdout.readline()
        assert line == "ready\n", line + process.communicate(timeout=TIMEOUT)[0]
    for process in processes:
        process.stdin.write("go\n")
        process.stdin.flush()


def _finish(process):
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"an archive process did not finish in {TIMEOUT}s:\n{output}")
    assert process.returncode == 0, output
    return output


def _check_rows(data: bytes, expected: list[str]) -> None:
    """One header, every line whole, every row there exactly once; pandas reads it."""
    lines = data.split(b"\n")
    assert lines[-1] == b"", "the last record is torn"
    assert lines[0] == HEADER
    assert lines.count(HEADER) == 1
    frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    assert list(frame.columns) == list(DEFAULT_COLUMNS)
    assert len(frame) == len(lines) - 2  # every line is one record
    ids = list(frame["event_id"])
    assert len(ids) == len(set(ids)), "a row was written twice"
    assert sorted(ids) == sorted(expected)
    assert set(frame["contact_phone"]) == {"+521234567890"}


@pytest.mark.slow
def test_processes_appending_to_one_file_keep_every_row(tmp_path):
    count, batch = 3000, 20
    prefixes = ["one", "two", "three"]
    processes = [_start("append", "archive", p, count, batch, cwd=tmp_path) for p in prefixes]
    _all_ready(processes)
    for process in processes:
        _finish(process)
    expected = [f"{p}-{n:05d}" for p in prefixes for n in range(count)]
    _check_rows((tmp_path / "archive" / "2024-12-19.csv").read_bytes(), expected)


@pytest.mark.slow
def test_compressing_a_day_while_another_process_appends_to_it_loses_nothing(tmp_path):
    count, batch = 2000, 10
    writer = _start("append", "archive", "late", count, batch, cwd=tmp_path)
    housekeeper = _start("housekeep", "archive", cwd=tmp_path)
    _all_ready([writer, housekeeper])
    _finish(writer)
    housekeeper.stdin.write("stop\n")
    housekeeper.stdin.flush()
    runs = _finish(housekeeper)
    assert int(runs.split()[1]) > 1, runs
    root = tmp_path / "archive"
    plain, compressed = root / "2024-12-19.csv", root / "2024-12-19.csv.gz"
    assert compressed.exists()
    # the day's rows are those of the .gz and of the plain file a late row began after it
    data = gzip.decompress(compressed.read_bytes())
    if plain.exists():
        data += plain.read_bytes().removeprefix(HEADER + b"\n")
    _check_rows(data, [f"late-{n:05d}" for n in range(count)])


async def test_two_sinks_of_one_process_on_one_directory(make_sink, tmp_path, call_ended):
    """Each sink locks the directory on its own; neither waits for the other forever."""
    first, second = await make_sink(), await make_sink(compress_after_days=1)
    root = tmp_path / "archive"

    async def deliver(sink, prefix):
        for start in range(0, 400, 20):
            events = [call_ended.evolve(id=f"{prefix}-{n:05d}") for n in range(start, start + 20)]
            assert await sink.deliver_batch(events) == {}

    async def housekeep():
        for _ in range(20):
            await second.housekeep()
            await asyncio.sleep(0)

    await asyncio.wait_for(
        asyncio.gather(deliver(first, "one"), deliver(second, "two"), housekeep()), TIMEOUT
    )
    await second.housekeep()
    data = gzip.decompress((root / "2024-12-19.csv.gz").read_bytes())
    assert not (root / "2024-12-19.csv").exists()
    _check_rows(data, [f"{p}-{n:05d}" for p in ("one", "two") for n in range(400)])


async def test_a_filesystem_without_locks_stops_the_sink_at_start(make_sink, tmp_path, monkeypatch):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(eventrouter_csv.locking.fcntl, "flock", no_locks)
    with pytest.raises(OSError, match="keep the archive on a local disk") as raised:
        await make_sink()
    lock = tmp_path / "archive" / LOCK_NAME
    assert str(raised.value) == (
        f"[Errno {errno.ENOLCK}] cannot lock {lock} (No locks available); "
        "keep the archive on a local disk"
    )
