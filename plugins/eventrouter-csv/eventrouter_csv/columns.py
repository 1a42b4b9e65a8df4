"""The archive's columns: one flat, stable row per event, built from the normalised parts only.

Every cell is one physical line (CR/LF become spaces) so a record never spans lines, and text
a spreadsheet would run as a formula is neutralised. ``raw`` is never read.
"""

from __future__ import annotations

import csv
import enum
import functools
import io
import json
import linecache
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
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


@attrs.frozen
class _Attribute:
    """A getter for ``event.<path>``, None when a part on the way is absent: a column read
    straight from the model, which :func:`render_row`'s generated code reads inline."""

    path: tuple[str, ...]

    def __call__(self, event: Event) -> Any:
        value: Any = event
        for name in self.path:
            if value is None:
                return None
            value = getattr(value, name)
        return value


def _part(part: str, attribute: str) -> _Getter:
    """A getter for ``event.data.<part>.<attribute>``; None when the event has no such part."""
    return _Attribute(("data", part, attribute))


#: every column the sink can write, in the default order, and where its value comes from
COLUMNS: Mapping[str, _Getter] = {
    "event_id": _Attribute(("id",)),
    "received_at": _Attribute(("received_at",)),
    "time": _Attribute(("time",)),
    "source": _Attribute(("source",)),
    "provider": _Attribute(("provider",)),
    "type": _Attribute(("type",)),
    "provider_type": _Attribute(("provider_type",)),
    "subject": _Attribute(("subject",)),
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
    "attributes": _Attribute(("data", "attributes")),
    # not written unless listed in ``columns``
    "idempotency_key": _Attribute(("idempotency_key",)),
    "specversion": _Attribute(("specversion",)),
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


#: text at or above this (in code point order) begins with no formula trigger and no space, so
#: neutralise would return it as it is
_NO_FORMULA = chr(max(map(ord, (*_TRIGGERS, " "))) + 1)


def _one_line(text: str) -> str:
    return _LINE_BREAK.sub(" ", text).replace("\x00", "")


#: json.dumps makes an encoder per call when given options; one made once writes the same text
_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True, default=str)


def _json(value: dict[Any, Any]) -> str:
    """``value`` as _JSON writes it."""
    return _JSON.encode(value)


def _cell(value: Any) -> str:
    """One value as the text of its cell."""
    if isinstance(value, str):  # most cells (vocabularies too: StrEnum), so tested first
        return _text(value)
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
        return _text(_json(value))
    elif isinstance(value, tuple | list):
        return _text(_joined(value))
    return _text(str(value))


def _text(text: str) -> str:
    """A text as its cell: on one line, and no formula."""
    # isprintable() is False for CR, LF and NUL (and other control characters): a cheap test
    # that most cells pass, where the substitution would scan them for nothing
    if text.isprintable():
        return text if text >= _NO_FORMULA else neutralise(text)
    return neutralise(_one_line(text))


def _joined(items: Sequence[Any]) -> str:
    """A transcript's turns, or any other items, as one text."""
    turns = []  # one pass, and no comprehension: a transcript is a few turns
    for item in items:
        if not isinstance(item, TranscriptTurn):
            return " ".join([str(item) for item in items])
        turns.append(f"{item.speaker}: {item.text}")
    return " | ".join(turns)


#: for a column of each type in the model: the test its usual value passes, and its cell then,
#: which is what _cell makes of that value, without the calls; other values go to _cell
_USUAL: dict[type, tuple[str, str]] = {
    str: (
        "v.__class__ is str and v.isprintable()",
        f"v if v >= {_NO_FORMULA!r} else neutralise(v)",
    ),
    # isoformat() asks a time's tzinfo for its offset, a third of its cost, and UTC's is known;
    # the date's text is kept (a backlog's times fall on a few days)
    datetime: (
        "v.__class__ is datetime and v.tzinfo is UTC",
        'f"{_day(v.toordinal())}T{v.time().isoformat()}+00:00"',
    ),
    int: ("v.__class__ is int", "str(v)"),
    # the encoder escapes every control character (CR, LF, NUL): the text is on one line, and
    # begins with "{", no formula
    dict: ("v.__class__ is dict", '_JSON.encode(v) if v else ""'),
    tuple: ("v.__class__ is tuple", '_text(_joined(v)) if v else ""'),
}


@functools.lru_cache(maxsize=1024)
def _day(ordinal: int) -> str:
    """The ISO 8601 text of a day, given by its ordinal (the generated code writes times)."""
    return date.fromordinal(ordinal).isoformat()


def _model_type(path: Sequence[str]) -> tuple[Any, bool]:
    """The type the model declares for ``event.<path>``, None left out, and whether it may be
    None. A generic type is given by its origin (``tuple``)."""
    declared: Any = Event
    optional = False
    for name in path:
        hint = typing.get_type_hints(declared)[name]
        kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        optional = type(None) in kinds
        kinds = tuple(kind for kind in kinds if kind is not type(None))
        declared = kinds[0] if len(kinds) == 1 else Any
    return typing.get_origin(declared) or declared, optional


def _may_be_absent(part: Sequence[str]) -> bool:
    """Whether ``event.<part>``, or a part on the way to it, may be None."""
    return any(_model_type(part[:end])[1] for end in range(1, len(part) + 1))


def _usual(declared: Any, namespace: dict[str, Any]) -> tuple[str, str] | None:
    """The test and the cell of a usual value of the ``declared`` type; None if it has none."""
    if isinstance(declared, type) and issubclass(declared, enum.Enum):
        # a member of a vocabulary is its own cell (plain words): checked here, not assumed
        members: list[Any] = list(declared)
        if not all(_cell(member) is member for member in members):
            return None
        namespace[declared.__name__] = declared
        return f"v.__class__ is {declared.__name__}", "v"
    return _USUAL.get(declared)


@functools.lru_cache(maxsize=64)
def _renderer(columns: tuple[str, ...]) -> Callable[[Event, str | None], list[str]]:
    """A function rendering ``columns``, generated for them from the model.

    Every delivery renders a row of dozens of cells: a loop calling a getter, then _cell and
    neutralise, for each cell cost more than the cells' own work. As attrs and cattrs generate
    their methods, this writes that loop out for one column list. Each part of the event is read
    once a row, and an absent part's cells are made empty together. Each model attribute's value
    is tested inline for what its declared type makes usual (printable text with no formula, a
    UTC time, an int, a member of the vocabulary, a dict or tuple) and made its cell at once; a
    UTC time equal to one already written in the row (an event's time is often its call's end)
    takes that cell. Any other value, and a column read by another getter, goes to _cell: every
    cell is what _cell makes of the value.
    """
    namespace: dict[str, Any] = {
        "UTC": UTC,
        "datetime": datetime,
        "neutralise": neutralise,
        "_cell": _cell,
        "_day": _day,
        "_joined": _joined,
        "_JSON": _JSON,
        "_text": _text,
    }
    local: dict[tuple[str, ...], str] = {(): "event"}  # the local holding each part read
    body: list[str] = []  # the lines reading the parts, then each part's cells
    # each part's columns: the cell's number, the value's expression, its declared type
    # (None: not a model attribute) and whether it may be None
    cells: dict[tuple[str, ...], list[tuple[int, str, Any, bool]]] = {(): []}
    for n, name in enumerate(columns):
        get = COLUMNS[name]
        if name == REPORT_FILE_COLUMN:
            cells[()].append((n, "report_file", None, True))
        elif not isinstance(get, _Attribute):  # another getter: called, its value to _cell
            namespace[f"get_{n}"] = get
            cells[()].append((n, f"get_{n}(event)", None, True))
        else:
            *way, attribute = get.path
            part = tuple(way)
            for end in range(1, len(part) + 1):  # event.data, then event.data.call, ...
                if part[:end] not in local:
                    parent = local[part[: end - 1]]
                    local[part[:end]] = "_".join(part[:end])
                    read = f"{parent}.{part[end - 1]}"
                    if _may_be_absent(part[: end - 1]):
                        read = f"None if {parent} is None else {read}"
                    body.append(f"{local[part[:end]]} = {read}")
            declared, optional = _model_type(get.path)
            cells.setdefault(part, []).append((n, f"{local[part]}.{attribute}", declared, optional))
    times: list[int] = []  # the UTC time columns written so far: t<n> holds the time
    for part, columns_of_part in cells.items():
        lines = []
        for n, value, declared, optional in columns_of_part:
            branches = []  # the usual value first: most cells have one
            usual = None if declared is None else _usual(declared, namespace)
            if usual and declared is datetime:
                same = "".join(f"c{m} if v == t{m} else " for m in times)
                branches.append((usual[0], [f"c{n} = {same}{usual[1]}", f"t{n} = v"]))
                times.append(n)
            elif usual:
                branches.append((usual[0], [f"c{n} = {usual[1]}"]))
            branches += [("v is None", [f'c{n} = ""'])] if optional else []
            lines.append(f"v = {value}")
            for keyword, (test, then) in zip(("if", "elif"), branches, strict=False):
                lines += [f"{keyword} {test}:", *(f"    {line}" for line in then)]
            lines += ["else:", f"    c{n} = _cell(v)"] if branches else [f"c{n} = _cell(v)"]
        if _may_be_absent(part):  # an absent part (no call, say): all its cells are empty
            empty = " = ".join(f"c{n}" for n, *_ in columns_of_part)
            lines = [f"if {local[part]} is None:", f'    {empty} = ""', "else:"] + [
                f"    {line}" for line in lines
            ]
        body += lines
    if times:  # a time not written (None, say) is equal to none
        body.insert(0, " = ".join(f"t{n}" for n in times) + " = None")
    body.append(f"return [{', '.join(f'c{n}' for n in range(len(columns)))}]")
    source = "\n".join(["def render(event, report_file):", *(f"    {line}" for line in body), ""])
    filename = f"<eventrouter_csv render_row {len(columns)} columns {id(columns):x}>"
    # the source is kept for tracebacks and debuggers, as attrs keeps its generated methods'
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - the code is ours
    render: Callable[[Event, str | None], list[str]] = namespace["render"]
    return render


#: the columns last rendered, and their renderer: a sink renders each row with the same tuple,
#: and finding it in _renderer's cache hashes dozens of names, the cost of a few cells
_last: tuple[tuple[str, ...], Callable[[Event, str | None], list[str]]] = ((), _renderer(()))


def render_row(
    event: Event, columns: Sequence[str], *, report_file: str | None = None
) -> list[str]:
    """The cells of ``event``'s row, in ``columns`` order."""
    global _last
    last, render = _last
    if columns is not last:  # (a list, which may change, is never the tuple kept)
        columns = tuple(columns)
        render = _renderer(columns)
        _last = columns, render
    return render(event, report_file)


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
