"""Blocking file work (run in a thread): durable appends, torn-tail repair, gzip of closed days.

Each record is exactly one line, so after a crash everything up to the last ``\\n`` is whole
and anything after it is a torn record: cutting the file back there restores a valid CSV.

A file that starts with another header than the configured columns (the columns changed since
it was begun) is never appended to: its rows continue in ``2026-12-01.2.csv`` beside it (the
first continuation that is new or has the configured header), so every file has one header.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from attrs import frozen

from eventrouter_csv.paths import numbered_name

__all__ = [
    "Appended",
    "HeaderMismatch",
    "append_lines",
    "archive_files",
    "compress_file",
    "fsync_directory",
    "make_directories",
    "repair_file",
    "repair_tail",
]

FILE_MODE = 0o640
_CHUNK = 64 * 1024


class HeaderMismatch(Exception):
    """An existing file starts with another header than the configured columns give.

    :func:`append_lines` handles it by moving on to a continuation file.
    """


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


def repair_file(path: Path) -> int:
    """Cut a torn last record off the file at ``path`` (durably); the bytes removed.

    A file left with nothing whole in it (torn in its first write) is removed, so no empty
    file that pandas cannot read stays behind; the next row re-creates it with its header.
    """
    with open(path, "r+b") as file:
        repaired = repair_tail(file)
        if not repaired:
            return 0
        empty = file.seek(0, os.SEEK_END) == 0
        os.fsync(file.fileno())
    if empty:
        path.unlink()
        fsync_directory(path.parent)
    return repaired


def archive_files(root: Path, matches: Callable[[str], bool], depth: int) -> Iterator[Path]:
    """The plain files under ``root``, at most ``depth`` levels down, whose relative
    ``/``-separated path ``matches``; directories deeper than the template are not entered."""
    for directory, subdirectories, files in os.walk(root):
        if len(Path(directory).relative_to(root).parts) + 1 >= depth:
            subdirectories.clear()
        for name in sorted(files):
            path = Path(directory, name)
            if matches(path.relative_to(root).as_posix()) and path.is_file():
                yield path


def _opener(path: str, flags: int) -> int:
    return os.open(path, flags, FILE_MODE)


@frozen
class Appended:
    """Where a batch of rows went."""

    #: the file written: the rows' own path, or a continuation of it (``2026-12-01.2.csv``)
    path: Path
    #: bytes of a torn last record cut off first
    repaired: int = 0


def append_lines(
    path: Path, header: bytes, lines: Sequence[bytes], *, extension: str = ""
) -> Appended:
    """Append ``lines`` to the CSV at ``path`` and fsync it; the torn bytes repaired first.

    A new or empty file gets ``header`` first; an existing one must start with it, so the
    header is never written twice. When ``path`` (or its ``.gz``) starts with another header,
    the lines go to the first continuation (``numbered_name(..., 2, extension)``, then 3, ...)
    that is new or starts with ``header``.
    """
    for number in itertools.count(1):
        target = path.with_name(numbered_name(path.name, number, extension))
        try:
            return _append(target, header, lines)
        except HeaderMismatch:
            continue
    raise AssertionError("unreachable")  # pragma: no cover


def _compressed_header(path: Path, header: bytes) -> bytes | None:
    """The first line of ``path.gz`` (an unreadable one counts as another header), or None."""
    compressed = path.with_name(path.name + ".gz")
    if not compressed.exists():
        return None
    try:
        with gzip.open(compressed, "rb") as file:
            return file.readline(len(header) + 1)
    except (OSError, EOFError):
        return b""


def _append(path: Path, header: bytes, lines: Sequence[bytes]) -> Appended:
    """Append to ``path`` itself; HeaderMismatch (nothing written) when it has other columns."""
    created = not path.exists()
    if created:
        # a closed day's rows live on in its .gz: a late row must not start it anew with other columns
        if _compressed_header(path, header) not in (None, header):
            raise HeaderMismatch(path.name)
        make_directories(path.parent)
    with open(path, "a+b", opener=_opener) as file:
        repaired = repair_tail(file)
        if file.seek(0, os.SEEK_END) == 0:
            if not created and _compressed_header(path, header) not in (None, header):
                raise HeaderMismatch(path.name)
            data = header + b"".join(lines)
        else:
            file.seek(0)
            first = file.readline(len(header) + 1)
            if first != header:
                raise HeaderMismatch(path.name)
            data = b"".join(lines)
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    if created:
        fsync_directory(path.parent)
    return Appended(path, repaired)


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
