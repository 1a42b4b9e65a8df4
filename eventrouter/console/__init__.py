"""The operator console: pages and a JSON API over the store, on a listener of its own.

``eventrouter serve`` starts it next to the webhook listener when the config has a
``[console]`` table; ``eventrouter console`` runs it alone (beside Redis workers).
"""

from __future__ import annotations

from eventrouter.console.app import create_console_app
from eventrouter.console.listener import ConsoleListenError, console_listener
from eventrouter.console.passwords import hash_password, verify_password

__all__ = [
    "ConsoleListenError",
    "console_listener",
    "create_console_app",
    "hash_password",
    "verify_password",
]
