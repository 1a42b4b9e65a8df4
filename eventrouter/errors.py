"""The exceptions eventrouter and its plugins raise, and what each one means to a sender."""

from __future__ import annotations

__all__ = [
    "EXCERPT_LIMIT",
    "AuthenticationError",
    "ConfigError",
    "DeliveryError",
    "EventRouterError",
    "ForbiddenError",
    "Overloaded",
    "PayloadError",
    "PermanentError",
    "RetryableError",
    "StoreUnavailable",
]


class EventRouterError(Exception):
    """Base class of every error eventrouter raises on purpose."""


class ConfigError(EventRouterError):
    """The configuration is invalid; ``problems`` lists every problem as ``path: message``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class PayloadError(EventRouterError):
    """A webhook body cannot be parsed or normalised: the sender gets a 400.

    The message is shown to the sender, so it must never contain a secret.
    """

    status = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.message = message
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class AuthenticationError(EventRouterError):
    """A request is not genuine (missing or bad signature or token): the sender gets a 401."""

    status = 401

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class ForbiddenError(AuthenticationError):
    """A request comes from a network the source does not accept: the sender gets a 403."""

    status = 403


#: the longest response excerpt an attempt keeps (characters)
EXCERPT_LIMIT = 2048


class DeliveryError(EventRouterError):
    """Base class of the errors a sink raises from ``deliver``.

    ``status`` (the HTTP status the remote end answered) and ``response_excerpt`` (the start of
    its answer) go into the attempt history when the sink knows them; the core masks secrets in
    the excerpt and keeps its first 2 KiB.
    """

    status: int | None = None
    response_excerpt: str | None = None

    def __init__(
        self, message: str, *, status: int | None = None, response_excerpt: str | None = None
    ) -> None:
        self.message = message
        if status is not None:
            self.status = status
        if response_excerpt is not None:
            self.response_excerpt = response_excerpt
        super().__init__(message)


class RetryableError(DeliveryError):
    """The delivery failed but may succeed later (5xx, timeout, rate limit).

    ``retry_after`` (seconds) overrides the sink's retry schedule for the next attempt,
    as a ``Retry-After`` header from the remote end would.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        status: int | None = None,
        response_excerpt: str | None = None,
    ) -> None:
        super().__init__(message, status=status, response_excerpt=response_excerpt)
        self.retry_after = retry_after


class PermanentError(DeliveryError):
    """The delivery can never succeed as it is (4xx, invalid data): dead-lettered at once."""


class StoreUnavailable(EventRouterError):
    """The store cannot take the event now: the sender gets a 503 and retries."""

    retry_after = 5


class Overloaded(StoreUnavailable):
    """Ingest is further behind than its configured limit: the sender gets a 503."""

    retry_after = 2
