"""Decoding an Exotel callback body, JSON or form-encoded, into one plain mapping.

Exotel documents its campaign callbacks as JSON, but its webhook pages say endpoints must take
``application/x-www-form-urlencoded`` POSTs, so both are read; the ``Content-Type`` decides.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from eventrouter import PayloadError, json_object

__all__ = ["FORM", "decode_body", "decode_form", "string_list"]

FORM = "application/x-www-form-urlencoded"

#: more fields than any Exotel callback has; bounds the work a hostile body can cause
MAX_FORM_FIELDS = 1000

_SNIFFED = ("", "text/plain", "application/octet-stream")
#: ``call_sids[]`` and ``call_sids[0]`` (PHP and Rails style) name a list
_LIST_KEY = re.compile(r"^(?P<name>.+?)\[\d*\]$")


def decode_body(body: bytes, content_type: str) -> dict[str, Any]:
    """The callback as a mapping: JSON for ``*/json`` and ``*+json``, form data for forms.

    Without a usable ``Content-Type`` (missing, ``text/plain``, ``application/octet-stream``)
    a body starting with ``{`` is read as JSON and anything else as form data.
    """
    if not body.strip():
        raise PayloadError("body is empty")
    if content_type == FORM:
        return decode_form(body)
    if content_type == "application/json" or content_type.endswith("+json"):
        return json_object(body)
    if content_type in _SNIFFED:
        return json_object(body) if body.lstrip().startswith(b"{") else decode_form(body)
    shown = content_type[:80]
    raise PayloadError(
        f"unsupported Content-Type {shown!r}: send application/json or {FORM}",
        field="Content-Type",
    )


def decode_form(body: bytes) -> dict[str, Any]:
    """A form body as ``{name: value}``; a repeated name (or ``name[]``) gives a list of values."""
    try:
        text = body.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise PayloadError(f"form body is not valid UTF-8 (byte {exc.start})") from None
    pieces = [piece for piece in text.split("&") if piece]
    if not pieces:
        raise PayloadError("form body has no fields")
    if len(pieces) > MAX_FORM_FIELDS:
        raise PayloadError(f"form body has more than {MAX_FORM_FIELDS} fields")
    if any("=" not in piece for piece in pieces):
        raise PayloadError("form body is not name=value pairs joined by '&'")
    result: dict[str, Any] = {}
    for raw_name, value in parse_qsl("&".join(pieces), keep_blank_values=True):
        match = _LIST_KEY.match(raw_name)
        name = match.group("name") if match else raw_name
        if name in result:
            existing = result[name]
            result[name] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            result[name] = [value] if match else value
    return result


def string_list(value: Any, *, field: str) -> tuple[str, ...]:
    """A list of ids however it arrived: a JSON array, repeated form keys, a JSON-encoded
    string (``'["a","b"]'``) or a comma-separated string (``"a,b"``). Blank items are dropped.
    """
    if value is None:
        return ()
    if isinstance(value, list):
        items: list[str] = []
        for item in value:
            if isinstance(item, list):
                raise PayloadError("expected a list of ids, got a nested list", field=field)
            items.extend(string_list(item, field=field))
        return tuple(items)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PayloadError(f"expected a list of ids, got {type(value).__name__}", field=field)
    text = str(value).strip()
    if text.startswith("["):
        try:
            decoded = json.loads(text)
        except (ValueError, RecursionError):
            raise PayloadError("expected a JSON array of ids", field=field) from None
        if not isinstance(decoded, list) or any(isinstance(item, list) for item in decoded):
            raise PayloadError("expected a JSON array of ids", field=field)
        return string_list(decoded, field=field)
    return tuple(item.strip() for item in text.split(",") if item.strip())
