"""The JSON API (``/api/...``): the pages' data for scripts, documented in docs/api.md.

Errors are JSON with a 4xx status: ``{"error": code, "message": what is wrong}``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from eventrouter.app import error_response
from eventrouter.console import data
from eventrouter.console.auth import require_operator
from eventrouter.console.keys import CONFIG, IDENTITY, METRICS, REDACTOR, STORE
from eventrouter.console.traffic import TRAFFIC
from eventrouter.query import FILTER_NAMES, QueryError

__all__ = ["add_routes"]


def _bad(exc: QueryError) -> web.Response:
    return error_response(400, "invalid_parameter", exc.message, parameter=exc.field)


async def _body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (an empty body is ``{}``); 400 for anything else."""
    text = await request.text()
    if not text.strip():
        return {}
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise QueryError("body", f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise QueryError("body", "expected a JSON object")
    return body


async def overview(request: web.Request) -> web.Response:
    app = request.app
    return web.json_response(
        await data.overview(
            app[STORE],
            app[CONFIG],
            app[REDACTOR],
            metrics=app.get(METRICS),
            traffic=app.get(TRAFFIC),
        )
    )


def _listing(read: data.ListingReader) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A JSON list of events (``/api/events``, ``/api/timeline``); a wrong parameter is a 400."""

    async def view(request: web.Request) -> web.Response:
        app = request.app
        try:
            page = await read(app[STORE], request.query, app[REDACTOR])
        except QueryError as exc:
            return _bad(exc)
        return web.json_response(page)

    return view


events = _listing(data.events_page)
timeline = _listing(data.timeline_page)


async def event(request: web.Request) -> web.Response:
    app = request.app
    event_id = request.match_info["event_id"]
    found = await data.event_detail(app[STORE], event_id, app[REDACTOR], list(app[CONFIG].sinks))
    if found is None:
        return error_response(404, "not_found", f"no event {event_id} in the store")
    found.pop("raw_pretty")
    return web.json_response(found)


@require_operator
async def replay(request: web.Request) -> web.Response:
    """Body ``{"sinks": [...]}`` (optional: the event's own sinks)."""
    app = request.app
    event_id = request.match_info["event_id"]
    try:
        body = await _body(request)
        sinks = body.get("sinks", [])
        if not isinstance(sinks, list) or not all(isinstance(s, str) for s in sinks):
            raise QueryError("sinks", "expected a list of sink names")
        result = await data.replay_event(
            app[STORE], event_id, sinks, list(app[CONFIG].sinks), actor=request[IDENTITY].trigger
        )
    except QueryError as exc:
        return _bad(exc)
    if result is None:
        return error_response(404, "not_found", f"no event {event_id} in the store")
    return web.json_response(result)


async def dead_letters(request: web.Request) -> web.Response:
    app = request.app
    sink = request.query.get("sink") or None
    return web.json_response(await data.dead_letter_groups(app[STORE], app[REDACTOR], sink=sink))


@require_operator
async def retry(request: web.Request) -> web.Response:
    """Body ``{"sink": NAME (optional: every sink), "filter": {the events' filters, as
    /api/events takes them} (optional), "confirm": true (optional: the plan only)}``."""
    app = request.app
    configured = list(app[CONFIG].sinks)
    try:
        body = await _body(request)
        sink = body.get("sink")
        if sink is not None and sink not in configured:
            raise QueryError(
                "sink", f"no sink named {sink!r} (configured: {', '.join(configured)})"
            )
        confirm = body.get("confirm", False)
        if not isinstance(confirm, bool):
            raise QueryError("confirm", "expected true or false")
        filters = body.get("filter", {})
        if not isinstance(filters, dict) or not all(isinstance(v, str) for v in filters.values()):
            raise QueryError("filter", "expected an object of filters, each a string")
        unknown = sorted(set(filters) - set(FILTER_NAMES))
        if unknown:
            raise QueryError(unknown[0], f"not a filter (filters: {', '.join(FILTER_NAMES)})")
        if "sink" in filters:
            raise QueryError("filter", 'give the sink beside the filter: {"sink": ...}')
        where = data.event_filter(filters)
        sinks = [sink] if sink else configured
        if not confirm:
            return web.json_response({"plan": await data.retry_plan(app[STORE], where, sinks)})
        result = await data.retry_dead_letters(
            app[STORE], where, sinks, actor=request[IDENTITY].trigger
        )
    except QueryError as exc:
        return _bad(exc)
    return web.json_response({"retried": result})


async def sinks(request: web.Request) -> web.Response:
    return web.json_response({"sinks": data.config_sinks(request.app[CONFIG])})


async def sources(request: web.Request) -> web.Response:
    return web.json_response({"sources": data.config_sources(request.app[CONFIG])})


async def routes(request: web.Request) -> web.Response:
    return web.json_response({"routes": data.config_routes(request.app[CONFIG])})


async def not_found(request: web.Request) -> web.Response:
    return error_response(404, "not_found", f"no API endpoint {request.path} (see docs/api.md)")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/overview", overview)
    router.add_get("/api/events", events)
    router.add_get("/api/events/{event_id}", event)
    router.add_post("/api/events/{event_id}/replay", replay)
    router.add_get("/api/dead-letters", dead_letters)
    router.add_post("/api/dead-letters/retry", retry)
    router.add_get("/api/timeline", timeline)
    router.add_get("/api/sinks", sinks)
    router.add_get("/api/sources", sources)
    router.add_get("/api/routes", routes)
    router.add_route("*", "/api/{tail:.*}", not_found)
