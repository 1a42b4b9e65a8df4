"""The contract of a CRM backend: what a new CRM (Salesforce, Pipedrive, Zoho) implements.

A backend gets CRM-neutral records (:mod:`eventrouter_crm.records`) and writes them. Every
method is idempotent: called again with the same record it updates what the first call
wrote. Failures are classified with the core's errors, so the sink retries what may succeed
later and dead-letters what never will:

- :class:`~eventrouter.errors.RetryableError` (``retry_after`` in seconds when the CRM says
  how long to wait): rate limits, 5xx, timeouts, network errors;
- :class:`~eventrouter.errors.PermanentError`: the CRM refused the data or the credentials.

Messages must never contain the token.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from eventrouter import SinkContext
    from eventrouter_crm.options import CRMOptions
    from eventrouter_crm.records import CallRecord, ContactRecord, NoteRecord

__all__ = ["CRMBackend", "CRMBackendType"]


class CRMBackend(Protocol):
    """One CRM account, written through the core's shared HTTP session."""

    async def upsert_contact(self, contact: ContactRecord) -> str:
        """Create or update the contact (matched on email, else phone); return its CRM id."""
        ...

    async def record_call(self, call: CallRecord, *, contact_id: str | None) -> str:
        """Create or update the call ``call.external_id`` names, linked to the contact."""
        ...

    async def add_note(self, note: NoteRecord, *, contact_id: str) -> str:
        """Create or update the note ``note.external_id`` names, linked to the contact."""
        ...

    async def close(self) -> None:
        """Finish the writes in flight (called once at shutdown)."""
        ...


class CRMBackendType(Protocol):
    """A backend class: checks the options it reads, and is built once the sink starts."""

    def __call__(self, options: CRMOptions, context: SinkContext) -> CRMBackend: ...

    def check(self, options: CRMOptions) -> Iterable[str]:
        """Problems with the options this backend reads, as ``option: message``."""
        ...
