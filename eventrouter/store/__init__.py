"""Durable storage of events and their deliveries, behind one contract (:class:`Store`)."""

from __future__ import annotations

from pathlib import Path

from eventrouter.errors import ConfigError
from eventrouter.store.base import (
    CONSOLE_ACTION,
    LOST_WORKER,
    Attempt,
    AttemptOutcome,
    DeadLetter,
    Delivery,
    DeliveryRecord,
    DeliveryState,
    IngestResult,
    Settlement,
    Store,
    StoredEvent,
    Trigger,
)
from eventrouter.store.config import REDIS_INSTALL_HINT, StoreConfig, redis_missing

__all__ = [
    "CONSOLE_ACTION",
    "LOST_WORKER",
    "REDIS_INSTALL_HINT",
    "Attempt",
    "AttemptOutcome",
    "DeadLetter",
    "Delivery",
    "DeliveryRecord",
    "DeliveryState",
    "IngestResult",
    "Settlement",
    "Store",
    "StoreConfig",
    "StoredEvent",
    "Trigger",
    "create_store",
    "redis_missing",
]


def create_store(config: StoreConfig, *, base_dir: Path) -> Store:
    """The store ``[store] backend`` names, not yet opened.

    Raises ConfigError when the backend's optional dependency is missing (``parse_config``
    reports the same problem, so a validated configuration does not get here).
    """
    if config.backend == "redis":
        problem = redis_missing()
        if problem:
            raise ConfigError([f"store.backend: {problem}"])
        from eventrouter.store.redis import RedisStore

        assert config.url is not None
        return RedisStore(
            config.url,
            key_prefix=config.key_prefix,
            dedupe_window=config.dedupe_window,
            max_pending_writes=config.max_pending_writes,
            sentinels=config.sentinels,
            service_name=config.service_name,
            operation_timeout=config.operation_timeout,
        )
    from eventrouter.store.sqlite import SQLiteStore

    return SQLiteStore(
        (base_dir / config.path).resolve(),
        dedupe_window=config.dedupe_window,
        max_pending_writes=config.max_pending_writes,
    )
