"""``[store]``: which backend keeps the events, and its settings.

It lives with the store (not in :mod:`eventrouter.config`) so that the store package needs
nothing from the configuration module, which imports it: no import cycle.
"""

from __future__ import annotations

from typing import Any

import attrs
from attrs import field, frozen

from eventrouter.converter import Duration

__all__ = ["REDIS_INSTALL_HINT", "StoreConfig", "redis_missing"]

REDIS_INSTALL_HINT = "pip install 'eventrouter[redis]'"


def redis_missing() -> str | None:
    """Why ``backend = "redis"`` cannot work here (the optional ``redis`` package is not
    installed), or None when it can."""
    try:
        import redis.asyncio.sentinel  # noqa: F401 - only whether it imports
    except ImportError as exc:
        return (
            f"the Redis store needs the redis package, which cannot be imported ({exc}); "
            f"install it with: {REDIS_INSTALL_HINT}"
        )
    return None


@frozen
class StoreConfig:
    backend: str = field(default="sqlite", validator=attrs.validators.in_(("sqlite", "redis")))
    #: sqlite: the database file, relative to the config file's directory
    path: str = "eventrouter.db"
    #: redis: the server, e.g. redis://localhost:6379/0 (with ``sentinels``: only its
    #: credentials, database number and scheme are used)
    url: str | None = None
    #: redis: prefix of every key eventrouter writes
    key_prefix: str = "eventrouter"
    #: redis: Sentinel addresses ("host:port"); the primary is the one they name ``service_name``
    sentinels: tuple[str, ...] = field(default=())
    #: redis: the Sentinel service (``sentinel monitor NAME ...``) of the primary
    service_name: str | None = field(default=None)
    #: how long a delivery's idempotency key is remembered
    dedupe_window: Duration = Duration(3 * 86400)
    #: delivered events older than this are deleted (dead and pending ones are kept)
    retention: Duration = Duration(7 * 86400)
    #: writes waiting for the disk before ingest answers 503 instead of queueing more
    max_pending_writes: int = field(default=5000, validator=attrs.validators.gt(0))
    #: the longest ingest, /readyz and /metrics wait for the store before answering 503
    operation_timeout: Duration = field(default=Duration(3))

    @backend.validator
    def _backend_installed(self, attribute: attrs.Attribute[str], value: str) -> None:
        if value == "redis":
            problem = redis_missing()
            if problem:
                raise ValueError(problem)

    @sentinels.validator
    def _sentinel_addresses(self, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
        for address in value:
            host, _, port = str(address).rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected 'host:port' entries, got {address!r}")

    @service_name.validator
    def _service_name_with_sentinels(self, attribute: attrs.Attribute[Any], value: Any) -> None:
        if self.sentinels and not value:
            raise ValueError("required with sentinels (the name in 'sentinel monitor NAME ...')")

    @operation_timeout.validator
    def _positive_timeout(self, attribute: attrs.Attribute[Any], value: float) -> None:
        if not value > 0:
            raise ValueError(f"must be more than 0 seconds, got {value!r}")
