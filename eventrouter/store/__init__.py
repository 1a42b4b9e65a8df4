"""Durable storage of events and their deliveries, behind one contract (:class:`Store`)."""

from __future__ import annotations

from pathlib import Path

from eventrouter.config import StoreConfig
from eventrouter.store.base import (
    DeadLetter,
    Delivery,
    DeliveryRecord,
    DeliveryState,
    IngestResult,
    Store,
    StoredEvent,
)

__all__ = [
    "DeadLetter",
    "Delivery",
    "DeliveryRecord",
    "DeliveryState",
    "IngestResult",
    "Store",
    "StoredEvent",
    "create_store",
]


def create_store(config: StoreConfig, *, base_dir: Path) -> Store:
    """The store ``[store] backend`` names, not yet opened."""
    if config.backend == "redis":
        from eventrouter.store.redis import RedisStore

        assert config.url is not None
        return RedisStore(
            config.url,
            key_prefix=config.key_prefix,
            dedupe_window=config.dedupe_window,
            max_pending_writes=config.max_pending_writes,
        )
    from eventrouter.store.sqlite import SQLiteStore

    return SQLiteStore(
        (base_dir / config.path).resolve(),
        dedupe_window=config.dedupe_window,
        max_pending_writes=config.max_pending_writes,
    )
