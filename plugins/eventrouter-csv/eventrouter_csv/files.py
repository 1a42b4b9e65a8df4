"""Blocking file work (run in a thread): durable appends, torn-tail repair, gzip of closed days.

Each record is exactly one line, so after a crash everything up to the last ``\\n`` is whole
and anything after it is a torn record: cutting the file back there restores a valid CSV.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "HeaderMismatch",
    "append_lines",
    "compress_file",
    "fsync_directory",
    "make_directories",
    "repair_tail",
]

FILE_MODE = 0o640
_CHUNK = 64 * 1024


class HeaderMismatch(Exception):
    """An existing file starts with another header than the configured columns give."""


def fsync_directory(path: Path) -> None:
    """Make the entries of directory ``path`` (new or renamed files) durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_directories(path: Path) -> None:
    """``mkdir -p path``, syncing each parent whose entries changed."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir()
        fsync_directory(directory.parent)


def repair_tail(file: BinaryIO) -> int:
    """Cut a torn last record (no trailing newline) off ``file``; the bytes removed."""
    size = file.seek(0, os.SEEK_END)
    if size == 0:
        return 0
    file.seek(size - 1)
    if file.read(1) == b"\n":
        return 0
    keep, end = 0, size
    while end > 0:
        start = max(0, end - _CHUNK)
        file.seek(start)
        newline = file.read(end - start).rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            break
        end = start
    file.truncate(keep)
    return size - keep


def _opener(path: str, flags: int) -> int:
    return os.open(path, flags, FILE_MODE)


def append_lines(path: Path, header: bytes, lines: Sequence[bytes]) -> int:
    """Append ``lines`` to the CSV at ``path`` and fsync it; the torn bytes repaired first.

    A new or empty file gets ``header`` first; an existing one must start with it
    (:class:`HeaderMismatch` otherwise), so the header is never written twice.
    """
    created = not path.exists()
    if created:
        make_directories(path.parent)
    with open(path, "a+b", opener=_opener) as file:
        repaired = repair_tail(file)
        if file.seek(0, os.SEEK_END) == 0:
            data = header + b"".join(lines)
        else:
            file.seek(0)
            first = file.readline(len(header) + 1)
            if first != header:
                raise HeaderMismatch(
                    f"{path.name} starts with other columns than configured; "
                    "move it away or restore the previous columns"
                )
            data = b"".join(lines)
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    if created:
        fsync_directory(path.parent)
    return repaired


def compress_file(path: Path) -> Path:
    """Replace the CSV at ``path`` by ``path.gz`` (atomically); merge into an existing one.

    A day's ``.gz`` can already exist when a late retry reopened a compressed day: its rows
    are copied first, then this file's rows without their header.
    """
    target = path.with_name(path.name + ".gz")
    temporary = path.with_name(path.name + ".gz.tmp")
    with open(path, "r+b") as source:
        repair_tail(source)
        source.seek(0)
        with (
            open(temporary, "wb", opener=_opener) as raw,
            gzip.GzipFile(filename=path.name, mode="wb", fileobj=raw) as out,
        ):
            if target.exists():
                with gzip.open(target, "rb") as previous:
                    shutil.copyfileobj(previous, out, _CHUNK)
                source.readline()
            shutil.copyfileobj(source, out, _CHUNK)
            out.close()
            raw.flush()
            os.fsync(raw.fileno())
    os.replace(temporary, target)
    fsync_directory(path.parent)
    path.unlink()
    fsync_directory(path.parent)
    return target
