"""Exotel's words for call and campaign states, in eventrouter's vocabulary."""

from __future__ import annotations

import re

from eventrouter import AnsweredBy, CallDirection, CallStatus, CampaignStatus

__all__ = [
    "TERMINAL_CAMPAIGN_STATUSES",
    "answered_by",
    "call_direction",
    "call_status",
    "campaign_status",
    "status_word",
]

_SEPARATORS = re.compile(r"[\s\-]+")

_CALL_STATUSES = {
    "completed": CallStatus.COMPLETED,
    "failed": CallStatus.FAILED,
    "busy": CallStatus.BUSY,
    "no_answer": CallStatus.NO_ANSWER,
    "noanswer": CallStatus.NO_ANSWER,
    "canceled": CallStatus.CANCELED,
    "cancelled": CallStatus.CANCELED,
    "queued": CallStatus.QUEUED,
    "ringing": CallStatus.RINGING,
    "in_progress": CallStatus.IN_PROGRESS,
    "answered": CallStatus.IN_PROGRESS,
}

_CAMPAIGN_STATUSES = {
    "completed": CampaignStatus.COMPLETED,
    "failed": CampaignStatus.FAILED,
    "canceled": CampaignStatus.CANCELED,
    "cancelled": CampaignStatus.CANCELED,
    "created": CampaignStatus.SCHEDULED,
    "scheduled": CampaignStatus.SCHEDULED,
    "in_progress": CampaignStatus.ACTIVE,
    "active": CampaignStatus.ACTIVE,
    "running": CampaignStatus.ACTIVE,
    "started": CampaignStatus.ACTIVE,
    "paused": CampaignStatus.PAUSED,
}

#: the statuses a campaign status callback reports when the campaign is over
TERMINAL_CAMPAIGN_STATUSES = frozenset(
    {CampaignStatus.COMPLETED, CampaignStatus.FAILED, CampaignStatus.CANCELED}
)


def status_word(value: str | None) -> str:
    """``value`` lower-cased with spaces and hyphens as ``_``: ``"No-Answer"`` -> ``"no_answer"``."""
    return _SEPARATORS.sub("_", value.strip().lower()) if value else ""


def call_status(value: str | None) -> CallStatus:
    """A call status (``completed``, ``no-answer``, ``Busy``...), any case or separator."""
    return _CALL_STATUSES.get(status_word(value), CallStatus.UNKNOWN)


def campaign_status(value: str | None) -> CampaignStatus:
    """A campaign status (``Completed``, ``Failed``, ``Canceled`` or ``Cancelled``...), any case."""
    return _CAMPAIGN_STATUSES.get(status_word(value), CampaignStatus.UNKNOWN)


def call_direction(value: str | None) -> CallDirection | None:
    """``inbound``, or ``outbound`` for Exotel's ``outbound-api`` and ``outbound-dial``."""
    word = status_word(value)
    if word == "inbound":
        return CallDirection.INBOUND
    if word.startswith("outbound"):
        return CallDirection.OUTBOUND
    return None


def answered_by(value: str | None) -> AnsweredBy | None:
    """Who answered a call leg; Exotel's ``NA`` (not answered, not detected) gives None."""
    word = status_word(value)
    if word in ("", "na", "n/a", "none", "null"):
        return None
    if word == "human":
        return AnsweredBy.HUMAN
    if word == "machine":
        return AnsweredBy.MACHINE
    return AnsweredBy.UNKNOWN
