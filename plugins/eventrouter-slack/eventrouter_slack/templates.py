"""User templates: ``str.format`` syntax over the flat event view, chosen by event-type glob.

``{campaign.name}`` names the view key ``campaign.name`` as a whole: no attribute access and no
indexing ever happens, so a template cannot reach past the view (``{type.__class__}`` is just a
key the view lacks, and renders empty).
"""

from __future__ import annotations

import fnmatch
import string
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from attrs import frozen

from eventrouter_slack.mrkdwn import escape
from eventrouter_slack.view import DYNAMIC_PREFIXES, STATIC_KEYS

__all__ = ["STALLED_TYPE", "Template", "TemplateSet", "template_problems"]

#: the template key that matches a stalled ``campaign.cycle_completed`` before its own type does
STALLED_TYPE = "campaign.stalled"

_CONVERSIONS = frozenset({"s", "r", "a"})


class _ViewFormatter(string.Formatter):
    """``string.Formatter`` that looks each whole field name up in a flat mapping."""

    def get_field(self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        return kwargs.get(field_name, ""), field_name

    def format_field(self, value: Any, format_spec: str) -> str:
        try:
            text = format(value, format_spec)
        except (TypeError, ValueError):
            # a numeric spec on a missing (empty) field: show what there is rather than fail
            text = str(value)
        return escape(text)


_FORMATTER = _ViewFormatter()


@frozen
class Template:
    """One template string, validated by :func:`template_problems`."""

    text: str

    def render(self, view: Mapping[str, Any]) -> str:
        """The template with each ``{key}`` replaced by the (mrkdwn-escaped) view value."""
        return _FORMATTER.vformat(self.text, (), view)


@frozen
class TemplateSet:
    """Templates by event-type glob; an exact key wins over globs, globs in config order."""

    templates: Mapping[str, Template]

    @classmethod
    def from_options(cls, templates: Mapping[str, str]) -> TemplateSet:
        return cls({pattern: Template(text) for pattern, text in templates.items()})

    def find(self, event_type: str, *, stalled: bool = False) -> Template | None:
        """The template for ``event_type`` (tried as ``campaign.stalled`` first when stalled)."""
        candidates = (STALLED_TYPE, event_type) if stalled else (event_type,)
        for candidate in candidates:
            exact = self.templates.get(candidate)
            if exact is not None:
                return exact
            for pattern, template in self.templates.items():
                if fnmatch.fnmatchcase(candidate, pattern):
                    return template
        return None


def template_problems(templates: Mapping[str, str]) -> Iterator[str]:
    """Each problem with ``templates`` as ``templates.PATTERN: message``."""
    for pattern, text in templates.items():
        if not pattern.strip():
            yield "templates: an event-type pattern cannot be empty"
            continue
        for problem in _problems(text, depth=0):
            yield f"templates.{pattern}: {problem}"


def _problems(text: str, *, depth: int) -> Iterator[str]:
    try:
        parsed = list(_FORMATTER.parse(text))
    except ValueError as exc:
        yield f"invalid template ({exc}); write a literal brace as '{{{{' or '}}}}'"
        return
    for _, field_name, format_spec, conversion in parsed:
        if field_name is None:
            continue
        problem = _field_problem(field_name)
        if problem:
            yield problem
        if conversion is not None and conversion not in _CONVERSIONS:
            yield f"{{{field_name}!{conversion}}}: conversion must be !s, !r or !a"
        if format_spec and "{" in format_spec:
            if depth >= 1:
                yield f"{{{field_name}}}: format specs nest one level at most"
            else:
                yield from _problems(format_spec, depth=depth + 1)


def _field_problem(name: str) -> str | None:
    if not name or name.isdigit():
        return (
            "positional fields ({} or {0}) are not supported; name a field such as {campaign.name}"
        )
    if "[" in name or "]" in name:
        return f"{{{name}}}: indexing is not supported; write nested keys with dots"
    if name in STATIC_KEYS or any(
        name.startswith(prefix) and len(name) > len(prefix) for prefix in DYNAMIC_PREFIXES
    ):
        return None
    return f"{{{name}}}: unknown field (see the README for the fields a template may use)"
