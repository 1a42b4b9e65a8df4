"""The ``path`` template: which file under the archive directory an event's row goes to."""

from __future__ import annotations

import re
import string
from datetime import date
from pathlib import PurePosixPath

from attrs import frozen

__all__ = ["PLACEHOLDERS", "PathTemplate", "safe_name"]

#: what a template may refer to: ``{date}`` (YYYY-MM-DD of received_at, UTC), ``{type}``, ``{source}``
PLACEHOLDERS = ("date", "type", "source")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SAFE_VALUE = r"[A-Za-z0-9._-]+"
_DATE = r"\d{4}-\d{2}-\d{2}"


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
        """Matches the relative paths this template renders; group ``date`` holds the day."""
        regex = []
        seen_date = False
        for literal, field in self._pieces():
            regex.append(re.escape(literal))
            if field == "date":
                regex.append("(?P=date)" if seen_date else f"(?P<date>{_DATE})")
                seen_date = True
            elif field is not None:
                regex.append(_SAFE_VALUE)
        return re.compile("".join(regex))

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
