"""The HTML pages: each renders the same dict its ``/api`` twin returns (see data.py)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from eventrouter.console import data
from eventrouter.console.auth import COOKIE, require_operator, set_session_cookie
from eventrouter.console.keys import CONFIG, IDENTITY, METRICS, REDACTOR, SESSIONS, STORE
from eventrouter.console.passwords import hash_password, verify_password
from eventrouter.console.render import render
from eventrouter.console.traffic import TRAFFIC
from eventrouter.query import EventFilter, QueryError

__all__ = ["add_routes"]

log = logging.getLogger("eventrouter.console")


@functools.cache
def _unknown_user_hash() -> str:
    return hash_password("no such user")


PageView = Callable[[web.Request], Awaitable[dict[str, Any]]]


def _page(template: str) -> Callable[[PageView], Callable[[web.Request], Awaitable[web.Response]]]:
    """A view that returns its page's data, rendered with ``template``."""

    def decorate(view: PageView) -> Callable[[web.Request], Awaitable[web.Response]]:
        @functools.wraps(view)
        async def page(request: web.Request) -> web.Response:
            return render(request, template, await view(request))

        return page

    return decorate


def _safe_next(target: str | None) -> str:
    """Only a path on this console (never ``//other.host``) after logging in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


async def login_form(request: web.Request) -> web.StreamResponse:
    if request.app[CONFIG].console.open_access:
        raise web.HTTPSeeOther("/")
    return render(
        request, "login.html", {"next": _safe_next(request.query.get("next")), "failed": False}
    )


async def login(request: web.Request) -> web.StreamResponse:
    config = request.app[CONFIG].console
    form = await request.post()
    name, password = str(form.get("name", "")), str(form.get("password", ""))
    target = _safe_next(str(form.get("next", "/")))
    user = config.users.get(name)
    # scrypt takes tens of milliseconds: in a thread, so webhooks sharing the loop do not wait;
    # an unknown name is checked against a hash too, so timing does not tell which names exist
    hashed = user.password_hash if user is not None else _unknown_user_hash()
    matched = await asyncio.to_thread(verify_password, password, hashed)
    if user is None or not matched:
        log.warning("console: failed login as %r from %s", name, request.remote)
        return render(request, "login.html", {"next": target, "failed": True}, status=401)
    session_id = request.app[SESSIONS].create(name, user.role)
    log.info("console: %s logged in (%s)", name, user.role)
    response = web.HTTPSeeOther(target)
    set_session_cookie(request, response, session_id, config)
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    request.app[SESSIONS].drop(request.cookies.get(COOKIE))
    response = web.HTTPSeeOther("/login")
    response.del_cookie(COOKIE, path="/")
    raise response


@_page("overview.html")
async def overview(request: web.Request) -> dict[str, Any]:
    app = request.app
    return await data.overview(
        app[STORE], app[CONFIG], app[REDACTOR], metrics=app.get(METRICS), traffic=app.get(TRAFFIC)
    )


async def _listing(
    request: web.Request,
    template: str,
    read: data.ListingReader,
) -> web.Response:
    """A list of events (the events page, a timeline): a wrong parameter is a 400 page saying
    which; links carry the filters to the next page, to the live tail and to the JSON twin."""
    app = request.app
    common: dict[str, Any] = {
        "sources": sorted(app[CONFIG].sources),
        "sinks": list(app[CONFIG].sinks),
        "problem": None,
        "next_page": None,
    }
    try:
        page = await read(app[STORE], request.query, app[REDACTOR])
    except QueryError as exc:
        context = {**common, "filters": dict(request.query), "events": [], "problem": str(exc)}
        return render(request, template, {**context, "query": ""}, status=400)
    query = urlencode(page["filters"])
    if page["next_cursor"]:
        common["next_page"] = urlencode({**page["filters"], "cursor": page["next_cursor"]})
    return render(request, template, {**common, **page, "query": query})


async def events(request: web.Request) -> web.Response:
    return await _listing(request, "events.html", data.events_page)


async def timeline(request: web.Request) -> web.Response:
    if not request.query:  # the form alone, before anything is asked
        context: dict[str, Any] = {"filters": {}, "events": [], "problem": None, "query": ""}
        return render(request, "timeline.html", {**context, "next_page": None, "asked": False})
    return await _listing(request, "timeline.html", data.timeline_page)


@_page("event.html")
async def event(request: web.Request) -> dict[str, Any]:
    app = request.app
    found = await data.event_detail(
        app[STORE], request.match_info["event_id"], app[REDACTOR], list(app[CONFIG].sinks)
    )
    if found is None:
        raise web.HTTPNotFound(text=f"no event {request.match_info['event_id']} in the store")
    return {"event": found, "replayed": request.query.get("replayed")}


@require_operator
async def replay(request: web.Request) -> web.StreamResponse:
    app = request.app
    event_id = request.match_info["event_id"]
    form = await request.post()
    chosen = [str(s) for s in form.getall("sink", []) if s]
    try:
        result = await data.replay_event(
            app[STORE],
            event_id,
            chosen,
            list(app[CONFIG].sinks),
            actor=request[IDENTITY].trigger,
        )
    except QueryError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    if result is None:
        raise web.HTTPNotFound(text=f"no event {event_id} in the store")
    raise web.HTTPSeeOther(f"/events/{event_id}?replayed={','.join(result['sinks'])}")


@_page("dead_letters.html")
async def dead_letters(request: web.Request) -> dict[str, Any]:
    app = request.app
    sink = request.query.get("sink") or None
    return await data.dead_letter_groups(app[STORE], app[REDACTOR], sink=sink)


@require_operator
async def retry(request: web.Request) -> web.StreamResponse:
    """Retry all dead letters of a sink (or all sinks): the plan first, then, confirmed, the run."""
    app = request.app
    form = await request.post()
    configured = list(app[CONFIG].sinks)
    sink = str(form.get("sink", "")) or None
    if sink is not None and sink not in configured:
        raise web.HTTPBadRequest(
            text=f"no sink named {sink!r} (configured: {', '.join(configured)})"
        )
    sinks = [sink] if sink else configured
    if form.get("confirm") != "yes":
        plan = await data.retry_plan(app[STORE], EventFilter(), sinks)
        return render(request, "retry.html", {"plan": plan, "sink": sink or ""})
    result = await data.retry_dead_letters(
        app[STORE], EventFilter(), sinks, actor=request[IDENTITY].trigger
    )
    # to a page of its own (reloading it does not retry again) that follows their delivery
    query = urlencode({"sink": sink or "", "queued": result["total"]})
    raise web.HTTPSeeOther(f"/dead-letters/progress?{query}")


async def progress(request: web.Request) -> web.Response:
    """After a retry: the sinks' queues now, refreshed every two seconds while any is busy."""
    app = request.app
    configured = list(app[CONFIG].sinks)
    sink = request.query.get("sink") or None
    sinks = [sink] if sink in configured else configured
    depth = await app[STORE].queue_depth()
    queues = [
        {
            "name": name,
            **{
                state: depth.get(name, {}).get(state, 0)
                for state in ("pending", "inflight", "dead")
            },
        }
        for name in sinks
    ]
    busy = any(q["pending"] or q["inflight"] for q in queues)
    queued = request.query.get("queued", "")
    context = {"queued": int(queued) if queued.isdigit() else None, "queues": queues, "busy": busy}
    return render(request, "progress.html", context)


@_page("config.html")
async def configuration(request: web.Request) -> dict[str, Any]:
    config = request.app[CONFIG]
    return {
        "sources": data.config_sources(config),
        "sinks": data.config_sinks(config),
        "routes": data.config_routes(config),
    }


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/login", login_form)
    router.add_post("/login", login)
    router.add_post("/logout", logout)
    router.add_get("/", overview)
    router.add_get("/events", events)
    router.add_get("/events/{event_id}", event)
    router.add_post("/events/{event_id}/replay", replay)
    router.add_get("/dead-letters", dead_letters)
    router.add_post("/dead-letters/retry", retry)
    router.add_get("/dead-letters/progress", progress)
    router.add_get("/timeline", timeline)
    router.add_get("/config", configuration)
