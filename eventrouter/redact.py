"""Keeping secrets out of logs, stored errors and error bodies."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["MASK", "RedactingFilter", "Redactor", "secret_forms"]

MASK = "***"

#: shorter values ("1", "true") would mangle unrelated text and are no secret anyway
MIN_LENGTH = 6
#: ``Bearer TOKEN``, ``Basic dXNlcjpwYXNz``, ``Token abc``: an auth scheme, then the credential
_SCHEME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_.-]*)\s+(\S.*?)\s*$", re.S)
#: the end of a text that starts a secret this long is a secret cut short (an answer a sink
#: shortened to 200 characters before raising): masked too
CUT_LENGTH = 8
#: LogRecord attributes the filter's field walk skips: ``msg`` (rendered and masked first) and
#: those logging fills in from the code (logger name, file, function, thread, level), never a
#: sender's text. A traceback or stack and every ``extra`` field are still searched.
_SKIPPED_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) - {
    "exc_text",
    "stack_info",
}


def secret_forms(value: str) -> Iterator[str]:
    """``value`` and the parts of it that are secrets on their own.

    The credential of an ``Authorization``-style value (``Bearer TOKEN``: ``TOKEN``), the
    ``user:password`` inside ``Basic`` and its password, the password of ``user:password``
    (and that pair as Basic sends it, base64), and the password and query values of a URL:
    a remote end or a log may show any of them without the rest.
    """
    yield value
    scheme = _SCHEME.match(value)
    if scheme:
        yield from secret_forms(scheme.group(2))
        if scheme.group(1).lower() == "basic":
            try:
                decoded = base64.b64decode(scheme.group(2), validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                decoded = ""
            if decoded:
                yield from secret_forms(decoded)
        return
    if "://" in value:
        try:
            parts = urlsplit(value)
            password = parts.password
        except ValueError:
            return
        if password:
            yield password
        yield from (item for _, item in parse_qsl(parts.query))
        return
    user, colon, password = value.partition(":")
    if colon and user and password:
        yield password
        yield base64.b64encode(value.encode("utf-8")).decode("ascii")


def _hex(byte: int) -> str:
    """``%2F`` in either case, as a server or client may write it."""
    return "%" + "".join(f"[{d.lower()}{d}]" if d.isalpha() else d for d in f"{byte:02X}")


def _encoded_char(char: str) -> str:
    """A pattern for ``char`` as written, percent-encoded, form-encoded or JSON-escaped."""
    forms = [re.escape(char), "".join(_hex(byte) for byte in char.encode("utf-8"))]
    if char == " ":
        forms.append(r"\+")
    escaped = json.dumps(char)[1:-1]
    if escaped.startswith("\\u"):
        forms.append(_json_u(char))
    elif escaped != char:
        forms.append(re.escape(escaped))
    if char == "/":
        forms.append(r"\\/")  # PHP's json_encode writes / as \/
    return "(?:" + "|".join(forms) + ")"


def _json_u(char: str) -> str:
    """``\\u00e9`` (a surrogate pair beyond the BMP) in either case, as JSON escapes ``char``."""
    return "".join(
        r"\\u" + "".join(f"[{d.lower()}{d}]" if d.isalpha() else d for d in f"{unit:04X}")
        for unit in _utf16(char)
    )


def _utf16(char: str) -> list[int]:
    data = char.encode("utf-16-be", "surrogatepass")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def _cut(value: str) -> str:
    """A pattern for a proper prefix of ``value`` of CUT_LENGTH or more characters."""
    rest = "".join(f"(?:{re.escape(char)}" for char in value[CUT_LENGTH:-1])
    return re.escape(value[:CUT_LENGTH]) + rest + ")?" * (len(value) - CUT_LENGTH - 1)


class Redactor:
    """Replaces every known secret value, the parts of each that are secret on their own
    (see :func:`secret_forms`) and their encoded forms (``%2B``, ``+``, ``\\/``) in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = sorted(
            {form for s in secrets for form in secret_forms(s) if len(form) >= MIN_LENGTH},
            key=len,
            reverse=True,
        )
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None
        #: a text shorter than every secret form holds none (an encoded form is never shorter)
        self._shortest = len(values[-1]) if values else 0
        self._encoded = (
            re.compile("|".join("".join(map(_encoded_char, value)) for value in values))
            if values
            else None
        )
        long_enough = [value for value in values if CUT_LENGTH < len(value) <= 256]
        self._cut = (
            re.compile("(?:" + "|".join(map(_cut, long_enough)) + r")\Z") if long_enough else None
        )
        #: a cut secret is searched for in this many last characters only
        self._tail = max(map(len, long_enough), default=0)

    def __call__(self, text: str, *, cut: bool = False) -> str:
        """``text`` with every secret masked; with ``cut``, also one cut short at its end.

        ``cut`` is for an error a sink shortened before raising it (``detail[:200]``), which may
        end with the first part of a secret; it costs a search of the end of the text.
        """
        if self._pattern is None or self._encoded is None or not text:
            return text
        if len(text) < self._shortest and not cut:
            return text
        # what only an encoded form of a secret holds: the literal pattern is enough without them
        if "%" in text or "+" in text or "\\" in text:
            text = self._encoded.sub(MASK, text)
        else:
            text = self._pattern.sub(MASK, text)
        if cut and self._cut is not None:
            found = self._cut.search(text, max(0, len(text) - self._tail))
            if found is not None:
                text = text[: found.start()] + MASK
        return text


class RedactingFilter(logging.Filter):
    """A logging filter that renders each record's message with secrets masked.

    ``format_exception`` is the handler's formatter's, so that the traceback masked is the one
    written.
    """

    def __init__(
        self,
        redactor: Redactor,
        *,
        format_exception: Callable[[Any], str] | None = None,
    ) -> None:
        super().__init__()
        self.redactor = redactor
        self.format_exception = format_exception or logging.Formatter().formatException

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redactor(message)
        if redacted != message or record.args:
            record.msg, record.args = redacted, None
        if record.exc_info and record.exc_info[1] is not None:
            text = self.format_exception(record.exc_info)
            record.exc_text = self.redactor(text)
        # every string field but those logging takes from the code: extras such as aiohttp's
        # access-log ``first_request_line`` carry the query string, where a token may be
        # (Exotel's ?token=)
        fields = record.__dict__
        for key in fields.keys() - _SKIPPED_FIELDS:
            value = fields[key]
            if isinstance(value, str):
                fields[key] = self.redactor(value)
        return True
