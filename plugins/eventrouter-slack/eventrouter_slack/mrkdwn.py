"""Slack mrkdwn text: escaping event values so they never become mentions or links."""

from __future__ import annotations

from datetime import datetime

__all__ = ["date", "escape", "link", "truncate"]


def escape(text: str) -> str:
    """``&``, ``<`` and ``>`` as Slack requires, so ``<!channel>`` in a name pings nobody."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending in an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def link(url: str | None, label: str) -> str:
    """A mrkdwn link to an http(s) ``url``; anything else is shown as escaped text."""
    if not url:
        return escape(label)
    if not url.lower().startswith(("http://", "https://")):
        return escape(url)
    safe = escape(url).replace("|", "%7C")
    return f"<{safe}|{escape(label).replace('|', '¦')}>"


def date(value: datetime) -> str:
    """A timestamp Slack shows in each reader's own time zone, with ISO text as fallback."""
    return f"<!date^{int(value.timestamp())}^{{date_short_pretty}} {{time}}|{value.isoformat()}>"
