"""Logging set-up: text for people, one JSON object per line for machines; secrets masked.

Values a sender chose (event types, ids, error texts) are written so that they cannot forge a
log line or steer a terminal: the text format escapes control characters, the JSON format
escapes those JSON itself leaves alone.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from eventrouter.redact import RedactingFilter, Redactor

__all__ = ["JSONFormatter", "TextFormatter", "escape_controls", "setup_logging"]

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def _escaped(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape_controls(text: str) -> str:
    """``text`` on one line, what a terminal would obey written out: ``\\n``, ``\\x1b``, ``\\u202e``.

    Everything Python does not call printable: C0 and C1 controls (a newline starts a forged
    line, ESC a terminal sequence), bidi and other format characters (text shown out of order,
    or hidden), separators, surrogates, unassigned code points. As the CLI's listings show them.
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def _json_escaped(char: str) -> str:
    data = char.encode("utf-16-be", "surrogatepass")
    return "".join(
        f"\\u{int.from_bytes(data[i : i + 2], 'big'):04x}" for i in range(0, len(data), 2)
    )


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc``, its causes and contexts, and the members of exception groups, once each."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [current.__cause__, current.__context__]
        if isinstance(current, BaseExceptionGroup):
            pending += list(current.exceptions)


def format_exception(exc_info: ExcInfo | tuple[None, None, None]) -> str:
    """A traceback whose lines are all Python's: each exception's message on one line.

    An exception's text may quote what a sender sent (``invalid type 'x\\n2026-... forged'``);
    the lines of the traceback itself are the code's, and keep their newlines.
    """
    text = "".join(traceback.format_exception(*exc_info))
    for exc in _chain(exc_info[1]):
        message = "".join(traceback.format_exception_only(type(exc), exc)).rstrip("\n")
        if not message.isprintable():
            text = text.replace(message, escape_controls(message))
    return "\n".join(map(escape_controls, text.split("\n")))


class TextFormatter(logging.Formatter):
    """``time level logger: message``, one line per record (the traceback follows, indented
    by Python), with the control characters of the message escaped."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatException(self, ei: Any) -> str:
        return format_exception(ei)

    def format(self, record: logging.LogRecord) -> str:
        saved = record.msg, record.args
        record.msg, record.args = escape_controls(record.getMessage()), None
        try:
            return super().format(record)
        finally:
            record.msg, record.args = saved


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key.removeprefix("er_")] = value
        if record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        line = json.dumps(entry, default=str, ensure_ascii=False)
        if line.isprintable():
            return line
        # json.dumps escapes C0 controls only; the rest occur only inside strings, where
        # \uXXXX means the same
        return "".join(char if char.isprintable() else _json_escaped(char) for char in line)


def _skip_unwritten_fields() -> None:
    """Stop logging from collecting, for every record, what neither format writes.

    The caller's file, line and function (a walk up the stack), the thread, process and
    multiprocessing names: the optimisations the logging HOWTO lists ("Optimization"). The
    per-event INFO line is on the ingest path, so this is paid once per accepted webhook.
    """
    logging._srcfile = None  # the documented switch for findCaller
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def setup_logging(
    *, fmt: str = "text", level: str = "info", redactor: Redactor | None = None
) -> None:
    """Send eventrouter's and aiohttp's logs to stderr in ``fmt`` (``text`` or ``json``)."""
    handler = logging.StreamHandler(sys.stderr)
    formatter: logging.Formatter = JSONFormatter() if fmt == "json" else TextFormatter()
    handler.setFormatter(formatter)
    handler.addFilter(
        RedactingFilter(redactor or Redactor(), format_exception=formatter.formatException)
    )
    _skip_unwritten_fields()
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp's access log repeats what eventrouter logs per request, with query strings that
    # may carry a token (Exotel): keep it quiet unless asked for at debug level
    logging.getLogger("aiohttp.access").setLevel(
        logging.DEBUG if level == "debug" else logging.WARNING
    )
