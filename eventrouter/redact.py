"""Keeping secrets out of logs, stored errors and error bodies."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

__all__ = ["MASK", "RedactingFilter", "Redactor"]

MASK = "***"


class Redactor:
    """Replaces every known secret value (and long-enough parts of URLs holding one) in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # short values ("1", "true") would mangle unrelated text and are no secret anyway
        values = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)


class RedactingFilter(logging.Filter):
    """A logging filter that renders each record's message with secrets masked."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redactor(message)
        if redacted != message or record.args:
            record.msg, record.args = redacted, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = self.redactor(text)
        # every string field: extras such as aiohttp's access-log ``first_request_line`` carry
        # the query string, where a token may be (Exotel's ?token=)
        for key, value in list(record.__dict__.items()):
            if isinstance(value, str) and key != "msg":
                setattr(record, key, self.redactor(value))
        return True
