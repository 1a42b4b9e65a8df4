"""What the sink asks a CRM to write, in no CRM's words: a backend turns these into requests."""

from __future__ import annotations

from datetime import datetime

from attrs import field, frozen

from eventrouter import AnsweredBy, CallDirection, CallStatus, TranscriptTurn

__all__ = ["CallRecord", "ContactRecord", "NoteRecord", "Plan"]


@frozen
class ContactRecord:
    """A person to create or update; matched on ``email`` when known, else on ``phone`` (E.164)."""

    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    #: CRM property name -> value, from the sink's ``property_mapping``
    properties: dict[str, str] = field(factory=dict)


@frozen
class CallRecord:
    """One call to log on the contact's timeline; ``external_id`` makes the write idempotent."""

    external_id: str
    timestamp: datetime
    title: str
    status: CallStatus = CallStatus.UNKNOWN
    direction: CallDirection | None = None
    answered_by: AnsweredBy | None = None
    duration_seconds: int | None = None
    recording_url: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    #: summary lines shown above the transcript
    summary: tuple[str, ...] = ()
    transcript: tuple[TranscriptTurn, ...] = ()


@frozen
class NoteRecord:
    """A note on the contact's timeline; ``external_id`` makes the write idempotent."""

    external_id: str
    timestamp: datetime
    title: str
    lines: tuple[str, ...] = ()


@frozen
class Plan:
    """Everything one event asks of the CRM; ``contact`` None means nobody to attach to."""

    contact: ContactRecord | None = None
    call: CallRecord | None = None
    note: NoteRecord | None = None

    @property
    def empty(self) -> bool:
        return self.contact is None and self.call is None
