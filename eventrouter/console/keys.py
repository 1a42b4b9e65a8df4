"""The console application's typed keys (one module, so views and middleware share them)."""

from __future__ import annotations

from aiohttp import web

from eventrouter.config import Config
from eventrouter.console.auth import Identity, Sessions
from eventrouter.metrics import Metrics
from eventrouter.redact import Redactor
from eventrouter.store import Store

__all__ = ["CONFIG", "IDENTITY", "METRICS", "REDACTOR", "SESSIONS", "STORE"]

CONFIG = web.AppKey("console_config", Config)
STORE = web.AppKey("console_store", Store)
REDACTOR = web.AppKey("console_redactor", Redactor)
SESSIONS = web.AppKey("console_sessions", Sessions)
#: set only when the console runs inside the process that receives webhooks
METRICS = web.AppKey("console_metrics", Metrics)
IDENTITY = web.RequestKey("console_identity", Identity)
