"""Rendering a page: its template with what every page shows (who is logged in, the CSRF token)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from eventrouter.console.keys import CONFIG, IDENTITY

__all__ = ["render"]


def render(
    request: web.Request, template: str, context: Mapping[str, Any], *, status: int = 200
) -> web.Response:
    identity = request.get(IDENTITY)
    common = {
        "identity": identity,
        "csrf_token": identity.csrf if identity else None,
        "open_access": request.app[CONFIG].console.open_access,
    }
    return aiohttp_jinja2.render_template(template, request, {**common, **context}, status=status)
