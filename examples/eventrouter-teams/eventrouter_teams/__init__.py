"""eventrouter-teams: the ``teams`` sink, each event as an Adaptive Card in a Microsoft Teams channel.

An example of a third-party plugin: it imports only eventrouter's public API.
"""

from __future__ import annotations

from collections.abc import Callable

from eventrouter import Sink, hookimpl
from eventrouter_teams.sink import TeamsOptions, TeamsSink, adaptive_card

__all__ = ["TeamsOptions", "TeamsSink", "adaptive_card", "register_sinks"]


@hookimpl
def register_sinks(register: Callable[[type[Sink]], None]) -> None:
    """Contribute the ``teams`` sink type."""
    register(TeamsSink)
