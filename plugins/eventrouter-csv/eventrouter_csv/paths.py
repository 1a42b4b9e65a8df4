"""The ``path`` template: which file under the archive directory an event's row goes to."""

from __future__ import annotations

import re
import string
from datetime import date
from pathlib import PurePosixPath

from attrs import frozen

__all__ = ["PLACEHOLDERS", "PathTemplate", "numbered_name", "safe_name"]

#: what a template may refer to: ``{date}`` (YYYY-MM-DD of received_at, UTC), ``{type}``, ``{source}``
PLACEHOLDERS = ("date", "type", "source")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SAFE_VALUE = r"[A-Za-z0-9._-]+"
_DATE = r"\d{4}-\d{2}-\d{2}"
#: the continuation number ``.2``, ``.3``, ... a file name may carry before its extension
_NUMBER = r"(?:\.(?:[2-9]|[1-9]\d+))?"


def numbered_name(name: str, number: int, extension: str) -> str:
    """File ``name`` (ending with ``extension``) as continuation ``number``; 1 is ``name`` itself.

    ``numbered_name("2026-12-01.csv", 2, ".csv") == "2026-12-01.2.csv"``.
    """
    if number == 1:
        return name
    stem = name[: len(name) - len(extension)] if extension else name
    return f"{stem}.{number}{extension}"


def safe_name(value: str, *, limit: int = 100) -> str:
    """``value`` as one harmless path segment: no separator, no leading dot, never empty."""
    name = _UNSAFE.sub("_", value)[:limit]
    if not name or name.startswith("."):
        name = "_" + name
    return name


@frozen
class PathTemplate:
    """A relative file path with placeholders; each value is sanitised into one safe segment."""

    template: str

    def _pieces(self) -> list[tuple[str, str | None]]:
        return [
            (literal, field)
            for literal, field, _, _ in string.Formatter().parse(self.template)
            if literal or field is not None
        ]

    def problems(self) -> list[str]:
        """What is wrong with the template, as messages for ``check()``."""
        try:
            parsed = list(string.Formatter().parse(self.template))
        except ValueError as exc:
            return [f"invalid template {self.template!r}: {exc}"]
        problems = []
        for _, field, spec, conversion in parsed:
            if field is None:
                continue
            if field not in PLACEHOLDERS:
                problems.append(
                    f"unknown placeholder {{{field}}}; use {', '.join(f'{{{p}}}' for p in PLACEHOLDERS)}"
                )
            elif spec or conversion:
                problems.append(f"placeholder {{{field}}} takes no format or conversion")
        if problems:
            return problems
        sample = self.template.format_map(dict.fromkeys(PLACEHOLDERS, "x"))
        parts = sample.split("/")
        if not sample.strip() or sample.startswith("/") or "\\" in sample or ":" in sample:
            problems.append(f"{self.template!r} must be a relative path such as '{{date}}.csv'")
        elif any(part in ("", ".", "..") for part in parts):
            problems.append(f"{self.template!r} may not hold empty, '.' or '..' segments")
        return problems

    @property
    def extension(self) -> str:
        """The literal file extension the template ends with (``.csv``), or ``""``.

        A continuation file (see :func:`numbered_name`) carries its number before it.
        """
        pieces = self._pieces()
        if not pieces or pieces[-1][1] is not None:
            return ""
        name = pieces[-1][0].rsplit("/", 1)[-1]
        dot = name.rfind(".")
        return name[dot:] if dot >= 0 else ""

    @property
    def has_date(self) -> bool:
        return any(field == "date" for _, field in self._pieces())

    def render(self, *, day: date, event_type: str, source: str) -> str:
        """The relative path (``/``-separated) of the file for these values."""
        values = {
            "date": day.isoformat(),
            "type": safe_name(event_type),
            "source": safe_name(source),
        }
        return self.template.format_map(values)

    def pattern(self) -> re.Pattern[str]:
        """Matches the relative paths this template renders, continuations (``.2``) included.

        Group ``date`` holds the day.
        """
        regex = []
        seen_date = False
        for literal, field in self._pieces():
            regex.append(re.escape(literal))
            if field == "date":
                regex.append("(?P=date)" if seen_date else f"(?P<date>{_DATE})")
                seen_date = True
            elif field is not None:
                regex.append(_SAFE_VALUE)
        extension = re.escape(self.extension)
        text = "".join(regex)
        text = text[: len(text) - len(extension)] if extension else text
        return re.compile(text + _NUMBER + extension)

    def day_of(self, relative: PurePosixPath | str) -> date | None:
        """The day of an archive file (plain or ``.gz``) at ``relative``, or None if not one."""
        text = str(relative)
        if text.endswith(".gz"):
            text = text[:-3]
        match = self.pattern().fullmatch(text)
        if match is None or "date" not in match.groupdict():
            return None
        try:
            return date.fromisoformat(match.group("date"))
        except ValueError:
            return None
