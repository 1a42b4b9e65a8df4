"""eventrouter: receive, verify, normalise, store and route webhooks from many providers."""

from eventrouter.converter import Secret
from eventrouter.errors import (
    AuthenticationError,
    ConfigError,
    ForbiddenError,
    PayloadError,
    PermanentError,
    RetryableError,
)
from eventrouter.events import (
    AnsweredBy,
    Call,
    CallDirection,
    CallStatus,
    Campaign,
    CampaignStatus,
    Contact,
    Event,
    EventData,
    EventType,
    TranscriptTurn,
)
from eventrouter.hookspecs import hookimpl
from eventrouter.sinks import Sink, SinkContext
from eventrouter.sources import NoOptions, SignedRequest, Source, WebhookRequest

__version__ = "0.1.0"

__all__ = [
    "AnsweredBy",
    "AuthenticationError",
    "Call",
    "CallDirection",
    "CallStatus",
    "Campaign",
    "CampaignStatus",
    "ConfigError",
    "Contact",
    "Event",
    "EventData",
    "EventType",
    "ForbiddenError",
    "NoOptions",
    "PayloadError",
    "PermanentError",
    "RetryableError",
    "Secret",
    "SignedRequest",
    "Sink",
    "SinkContext",
    "Source",
    "TranscriptTurn",
    "WebhookRequest",
    "__version__",
    "hookimpl",
]
