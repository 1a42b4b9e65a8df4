"""The console's aiohttp application: security headers, errors, who is asking, and the routes.

It runs on a listener of its own (``[console] host`` and ``port``), never on the webhook port:
the port providers reach exposes only ``/hooks/...`` and the health endpoints.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from eventrouter.app import error_response
from eventrouter.config import Config
from eventrouter.console import api, pages, tail, traffic
from eventrouter.console.auth import (
    Handler,
    Sessions,
    authenticate,
    check_csrf,
    set_session_cookie,
)
from eventrouter.console.keys import CONFIG, IDENTITY, METRICS, REDACTOR, SESSIONS, STORE
from eventrouter.console.render import render
from eventrouter.errors import StoreUnavailable
from eventrouter.metrics import Metrics
from eventrouter.redact import Redactor
from eventrouter.store import Store, create_store

__all__ = ["create_console_app"]

log = logging.getLogger("eventrouter.console")

_HERE = Path(__file__).parent

#: no inline script or style anywhere: everything comes from /static on this origin
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

#: reachable without logging in
_PUBLIC = ("/login", "/static/")


def _wants_json(request: web.Request) -> bool:
    return request.path.startswith("/api/")


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A strict CSP on every answer, nothing cached, no framing, no sniffing."""
    response = await handler(request)
    if not response.prepared:
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        if not request.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
    return response


def _problem(request: web.Request, status: int, error: str, message: str) -> web.StreamResponse:
    if _wants_json(request):
        return error_response(status, error, message)
    return render(
        request, "error.html", {"status": status, "error": error, "message": message}, status=status
    )


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error a page (or JSON under /api) saying what is wrong; never a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _problem(
            request, exc.status, exc.reason.lower().replace(" ", "_"), exc.text or exc.reason
        )
    except StoreUnavailable as exc:
        return _problem(request, 503, "store_unavailable", f"the store does not answer: {exc}")
    except Exception:
        log.exception("console: unexpected error answering %s %s", request.method, request.path)
        return _problem(request, 503, "internal_error", "the request failed; retry later")


@web.middleware
async def authorization(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Who is asking; pages send strangers to the login form, the API answers 401; actions need
    the operator role and, with a session, its CSRF token."""
    if request.path.startswith(_PUBLIC):
        return await handler(request)
    config = request.app[CONFIG].console
    identity, new_session = authenticate(request, config, request.app[SESSIONS])
    if identity is None:
        if "Authorization" in request.headers or _wants_json(request):
            return error_response(
                401, "unauthorized", "log in, or send Authorization: Bearer <a [console] token>"
            )
        raise web.HTTPSeeOther(f"/login?next={request.path_qs}")
    request[IDENTITY] = identity
    if request.method not in ("GET", "HEAD"):
        if getattr(handler, "operator_only", False) and not identity.operator:
            return _problem(
                request,
                403,
                "forbidden",
                f"{identity.name} is a viewer: only an operator may do this",
            )
        if not await check_csrf(request, identity):
            log.warning(
                "console: %s %s by %s refused: no valid CSRF token",
                request.method,
                request.path,
                identity.name,
            )
            return _problem(
                request,
                403,
                "csrf",
                "the form's CSRF token is missing or stale: reload the page and try again",
            )
    response = await handler(request)
    if new_session is not None:
        set_session_cookie(request, response, new_session, config)
    return response


def when(moment: str | None) -> str:
    """An ISO time as the pages show it: UTC, to the second (``2026-12-02 07:50:04``)."""
    if not moment:
        return ""
    return datetime.fromisoformat(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def create_console_app(
    config: Config, *, store: Store | None = None, metrics: Metrics | None = None
) -> web.Application:
    """The console for ``config``. ``store``: the serving process's own (opened and closed
    there); without one the console opens a store of its own (``eventrouter console``)."""
    app = web.Application(middlewares=[security_headers, errors, authorization])
    app[CONFIG] = config
    app[REDACTOR] = Redactor(config.secrets)
    app[SESSIONS] = Sessions(lifetime=float(config.console.session_lifetime))
    if metrics is not None:
        app[METRICS] = metrics
        traffic.install(app, metrics)
    if store is None:
        app[STORE] = create_store(config.store, base_dir=config.base_dir)
        app.cleanup_ctx.append(_own_store)
    else:
        app[STORE] = store
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("eventrouter.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        filters={"when": when},
    )
    app.router.add_static("/static/", _HERE / "static", append_version=True)
    tail.install(app)  # before /events/{event_id}, which would match /events/stream
    pages.add_routes(app.router)
    api.add_routes(app.router)
    return app


async def _own_store(app: web.Application) -> AsyncIterator[None]:
    await app[STORE].open(lazy=True)
    yield
    await app[STORE].close()
