"""eventrouter-slack: the ``slack`` sink, events as Block Kit alerts in a Slack channel."""

from __future__ import annotations

from collections.abc import Callable

from eventrouter import Sink, hookimpl
from eventrouter_slack.sink import SlackOptions, SlackSink

__all__ = ["SlackOptions", "SlackSink", "register_sinks"]


@hookimpl
def register_sinks(register: Callable[[type[Sink]], None]) -> None:
    """Contribute the ``slack`` sink type."""
    register(SlackSink)
