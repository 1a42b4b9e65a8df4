"""The archive's columns: one flat, stable row per event, built from the normalised parts only.

Every cell is one physical line (CR/LF become spaces) so a record never spans lines, and text
a spreadsheet would run as a formula is neutralised. ``raw`` is never read.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

from eventrouter import REDACTED, Event, TranscriptTurn

__all__ = [
    "COLUMNS",
    "DEFAULT_COLUMNS",
    "EXTRA_COLUMNS",
    "REPORT_FILE_COLUMN",
    "archive_view",
    "encode_row",
    "encode_rows",
    "neutralise",
    "render_row",
]

#: the column that names the downloaded campaign report (filled in by the sink, not the event)
REPORT_FILE_COLUMN = "campaign_report_file"

_Getter = Callable[[Event], Any]


def _part(part: str, attribute: str) -> _Getter:
    """A getter for ``event.data.<part>.<attribute>``; None when the event has no such part."""

    def get(event: Event) -> Any:
        value = getattr(event.data, part)
        return None if value is None else getattr(value, attribute)

    return get


#: every column the sink can write, in the default order, and where its value comes from
COLUMNS: Mapping[str, _Getter] = {
    "event_id": lambda e: e.id,
    "received_at": lambda e: e.received_at,
    "time": lambda e: e.time,
    "source": lambda e: e.source,
    "provider": lambda e: e.provider,
    "type": lambda e: e.type,
    "provider_type": lambda e: e.provider_type,
    "subject": lambda e: e.subject,
    "contact_phone": _part("contact", "phone"),
    "contact_email": _part("contact", "email"),
    "contact_name": _part("contact", "name"),
    "contact_external_id": _part("contact", "external_id"),
    "call_id": _part("call", "id"),
    "call_direction": _part("call", "direction"),
    "call_status": _part("call", "status"),
    "call_provider_status": _part("call", "provider_status"),
    "call_answered_by": _part("call", "answered_by"),
    "call_started_at": _part("call", "started_at"),
    "call_ended_at": _part("call", "ended_at"),
    "call_duration_seconds": _part("call", "duration_seconds"),
    "call_from_number": _part("call", "from_number"),
    "call_to_number": _part("call", "to_number"),
    "call_recording_url": _part("call", "recording_url"),
    "call_attempt_ids": _part("call", "attempt_ids"),
    "call_transcript": _part("call", "transcript"),
    "campaign_id": _part("campaign", "id"),
    "campaign_name": _part("campaign", "name"),
    "campaign_status": _part("campaign", "status"),
    "campaign_provider_status": _part("campaign", "provider_status"),
    "campaign_previous_status": _part("campaign", "previous_status"),
    "campaign_run_id": _part("campaign", "run_id"),
    "campaign_cycle": _part("campaign", "cycle"),
    "campaign_next_cycle_at": _part("campaign", "next_cycle_at"),
    "campaign_report_url": _part("campaign", "report_url"),
    REPORT_FILE_COLUMN: lambda e: None,
    "campaign_stats": _part("campaign", "stats"),
    "attributes": lambda e: e.data.attributes,
    # not written unless listed in ``columns``
    "idempotency_key": lambda e: e.idempotency_key,
    "specversion": lambda e: e.specversion,
}

#: columns that exist but are left out of the default list
EXTRA_COLUMNS: tuple[str, ...] = ("idempotency_key", "specversion")

#: the columns written when ``columns`` is not configured: the same for every event type
DEFAULT_COLUMNS: tuple[str, ...] = tuple(name for name in COLUMNS if name not in EXTRA_COLUMNS)

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_E164 = re.compile(r"\+[0-9]{1,15}")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def neutralise(text: str) -> str:
    """``text`` with a leading ``'`` when a spreadsheet would run it as a formula (OWASP).

    A bare E.164 number (``+`` and digits only) is left as it is: it cannot call a function,
    and phone numbers must stay usable. Leading spaces are looked through, since some
    spreadsheets ignore them before a formula.
    """
    if text.lstrip(" ").startswith(_TRIGGERS) and not _E164.fullmatch(text):
        return "'" + text
    return text


def _one_line(text: str) -> str:
    return _LINE_BREAK.sub(" ", text).replace("\x00", "")


def _transcript(turns: Iterable[TranscriptTurn]) -> str:
    return " | ".join(f"{turn.speaker}: {turn.text}" for turn in turns)


#: json.dumps makes an encoder per call when given options; one made once writes the same text
_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True, default=str)


def _cell(value: Any) -> str:
    """One value as the text of its cell."""
    if isinstance(value, str):  # most cells (vocabularies too: StrEnum), so tested first
        text = value
    elif value is None:
        return ""
    elif isinstance(value, bool):
        return "true" if value else "false"
    elif isinstance(value, int | float):
        return str(value)
    elif isinstance(value, datetime):
        # astimezone(UTC) returns a UTC time as it is: skip the call for the usual case
        return (value if value.tzinfo is UTC else value.astimezone(UTC)).isoformat()
    elif isinstance(value, dict | tuple | list) and not value:
        return ""  # no attributes, stats, attempts or transcript: the most common case
    elif isinstance(value, dict):
        text = _JSON.encode(value)
    elif isinstance(value, tuple | list):
        if all(isinstance(item, TranscriptTurn) for item in value):
            text = _transcript(value)
        else:
            text = " ".join(str(item) for item in value)
    else:
        text = str(value)
    # isprintable() is False for CR, LF and NUL (and other control characters): a cheap test
    # that most cells pass, where the substitution would scan them for nothing
    return neutralise(text if text.isprintable() else _one_line(text))


@functools.lru_cache(maxsize=64)
def _getters(columns: tuple[str, ...]) -> tuple[_Getter | None, ...]:
    """Where each column's value comes from; None for the report file (the sink's to give)."""
    return tuple(None if name == REPORT_FILE_COLUMN else COLUMNS[name] for name in columns)


def render_row(
    event: Event, columns: Sequence[str], *, report_file: str | None = None
) -> list[str]:
    """The cells of ``event``'s row, in ``columns`` order."""
    cells = []
    for get in _getters(tuple(columns)):
        value = report_file if get is None else get(event)
        cells.append("" if value is None else _cell(value))  # absent values: no call
    return cells


def encode_row(cells: Sequence[str]) -> bytes:
    """One CSV record, UTF-8, ending in a single ``\\n``."""
    return encode_rows((cells,))


def encode_rows(rows: Iterable[Sequence[str]]) -> bytes:
    """CSV records, UTF-8, each ending in a single ``\\n``: what :func:`encode_row` gives for
    each row, joined, for the price of one writer (a batch of rows is appended at once)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode("utf-8", "replace")


def archive_view(event: Event) -> Event:
    """``event`` as it may be archived: credential fields blanked even if the sink got them.

    The core hands sinks ``event.redacted()`` unless ``include_sensitive`` is set; this sink
    never writes credentials either way. Each sensitive path is blanked in ``data.attributes``,
    and tried there without its leading parts too (``data.user.token`` -> ``user.token``,
    ``token``), since a source may keep the field at a shallower place there than in ``raw``.
    ``raw`` is never archived: the view holds none (rather than a redacted copy of it).
    """
    if not event.sensitive:
        return event
    attributes = event.data.attributes
    for path in event.sensitive:
        parts = path.split(".")
        for start in range(len(parts)):
            attributes = _blanked(attributes, parts[start:])
    return event.evolve(raw=None, data=attrs.evolve(event.data, attributes=attributes))


def _blanked(node: Any, parts: Sequence[str]) -> Any:
    """``node`` with the value at ``parts`` (a number indexes a list) reading ``[redacted]``,
    if it is there and not None. The dicts and lists on the way are copied and the rest shared,
    not deep-copied: the event is left as it was, and the view is only read."""
    key: str | int = parts[0]
    if isinstance(node, list) and parts[0].isdigit() and int(parts[0]) < len(node):
        key = int(parts[0])
    elif not isinstance(node, dict) or key not in node:
        return node
    child = node[key]
    blanked = _blanked(child, parts[1:]) if len(parts) > 1 else REDACTED
    if child is None or blanked is child:
        return node
    copied = node.copy()
    copied[key] = blanked
    return copied
