"""What the default log level costs per record: the masking filter searches only what a sender
can have written, and logging does not walk the stack for fields no format writes."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from eventrouter.logs import setup_logging
from eventrouter.redact import MASK, RedactingFilter, Redactor

SECRET = "altur-cost-secret-0123456789"


class CountingRedactor(Redactor):
    """A real redactor that remembers every text it was asked to search."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__(secrets)
        self.searched: list[str] = []

    def __call__(self, text: str, *, cut: bool = False) -> str:
        self.searched.append(text)
        return super().__call__(text, cut=cut)


def test_filter_searches_the_message_and_extras_not_the_code_fields() -> None:
    redactor = CountingRedactor((SECRET,))
    record = logging.LogRecord(
        "eventrouter.ingest", logging.INFO, __file__, 1, "accepted %s", ("evt_1",), None
    )
    record.er_event_id = "evt_1"
    record.er_note = f"sent {SECRET}"

    assert RedactingFilter(redactor).filter(record)

    # the message and the two extras; the logger name, file, module, function, level name
    # and thread name are logging's, taken from the code, and cost nothing any more
    assert sorted(redactor.searched) == ["accepted evt_1", "evt_1", f"sent {SECRET}"]
    assert record.er_note == f"sent {MASK}"
    assert record.getMessage() == "accepted evt_1"


def test_a_text_shorter_than_every_secret_is_not_searched() -> None:
    redactor = Redactor((SECRET,))
    short = "x" * (len(SECRET) - 1)
    assert redactor(short) is short
    # a secret cut short at the end of a text is still found in a short text
    assert redactor(f"token {SECRET[:10]}", cut=True) == f"token {MASK}"


def test_setup_logging_does_not_look_up_the_caller_of_each_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for flag in ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, flag, getattr(logging, flag))
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    access = logging.getLogger("aiohttp.access")
    monkeypatch.setattr(access, "level", access.level)
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    lookups: list[object] = []
    real = logging.Logger.findCaller

    def counting(self: logging.Logger, *args: object, **kwargs: object) -> object:
        lookups.append(args)
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(logging.Logger, "findCaller", counting)
    setup_logging(fmt="text", level="info", redactor=Redactor((SECRET,)))

    logging.getLogger("eventrouter.ingest").info("source %s: accepted %s", "altur", SECRET)

    assert lookups == []
    assert buffer.getvalue().rstrip().endswith(f"eventrouter.ingest: source altur: accepted {MASK}")
