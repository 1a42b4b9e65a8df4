"""The aiohttp application: a route per source, ``/healthz``, ``/readyz``, ``/metrics``.

A source's handler reads the body (413 beyond ``max_body_bytes``, 408 past ``read_timeout``),
feeds it to the source's ingest pipeline (:mod:`eventrouter.ingest`: authenticate, parse,
transform, route, store) and answers its outcome. The 2xx is sent only once the event is
durable; if it cannot be stored the answer is 503 with ``Retry-After`` so the provider retries.
Ingest, ``/readyz`` and ``/metrics`` wait for the store at most ``[store] operation_timeout``: a
store that hangs (a paused Redis) gets a 503 in time, before the provider gives up on the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import pluggy
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from eventrouter import __version__
from eventrouter.circuit import observe
from eventrouter.config import Config, ServerConfig
from eventrouter.dispatch import Dispatcher, cancel_and_wait
from eventrouter.errors import StoreUnavailable
from eventrouter.ingest import Ingest, Outcome, within_deadline
from eventrouter.metrics import Metrics
from eventrouter.operator_events import OperatorEvents
from eventrouter.redact import Redactor
from eventrouter.sinks import SinkContext
from eventrouter.sources import WebhookRequest
from eventrouter.store import Store, create_store

__all__ = [
    "CONFIG",
    "DISPATCHER",
    "METRICS",
    "STORE",
    "create_app",
    "error_response",
    "http_error_response",
]

log = logging.getLogger("eventrouter.app")

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", Store)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
METRICS = web.AppKey("metrics", Metrics)
PLUGIN_MANAGER = web.AppKey("plugin_manager", pluggy.PluginManager)
REDACTOR = web.AppKey("redactor", Redactor)
HTTP = web.AppKey("http", aiohttp.ClientSession)


def error_response(status: int, error: str, message: str, **extra: Any) -> web.Response:
    """A JSON error body: ``{"error": code, "message": what is wrong, ...}``."""
    headers = {}
    if "retry_after" in extra:
        headers["Retry-After"] = str(extra["retry_after"])
    return web.json_response(
        {"error": error, "message": message, **extra}, status=status, headers=headers
    )


_REASONS = {
    404: ("not_found", "no source is mounted at this path"),
    405: ("method_not_allowed", "webhooks are received with POST"),
    413: ("payload_too_large", "the body is larger than the configured limit"),
}


def http_error_response(
    exc: web.HTTPException, method: str, *, error: str | None = None
) -> web.Response:
    """An error aiohttp raised (404, 405, 413, 417...) as a JSON body like every other error."""
    code, message = _REASONS.get(exc.status, (exc.reason.lower().replace(" ", "_"), exc.reason))
    if exc.text and not exc.text.startswith(f"{exc.status}: "):  # a message, not the default
        message = exc.text
    if exc.status == 405:
        message = f"{method} is not allowed here (allowed: {exc.headers.get('Allow', '')})"
    response = error_response(exc.status, error or code, message)
    if "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error answered as JSON, never an HTML page or a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return http_error_response(exc, request.method)
    except Exception:
        log.exception("unexpected error answering %s %s", request.method, request.path)
        return error_response(
            503, "internal_error", "the request could not be processed; retry later", retry_after=30
        )


class _Receiver:
    """The handler of one source's path."""

    def __init__(self, ingest: Ingest, *, limits: ServerConfig, metrics: Metrics) -> None:
        self.name = name = ingest.name
        self.ingest = ingest
        self.limits = limits
        # labelled metric children are looked up once, not on every request
        self._ack_latency = metrics.ack_latency.labels(name)
        self._requests = metrics.requests
        self._outcomes: dict[str, Any] = {}

    def _counter(self, outcome: str) -> Any:
        """The requests counter of ``outcome`` (its child is made on first use, then kept)."""
        counter = self._outcomes.get(outcome)
        if counter is None:
            counter = self._outcomes[outcome] = self._requests.labels(self.name, outcome)
        return counter

    async def handle(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        body: bytes | None = None
        try:
            try:
                body = await self._read(request)
            except (web.HTTPException, RequestPayloadError, ConnectionError, TimeoutError) as exc:
                outcome = self._unreadable(request, exc)
            else:
                webhook = WebhookRequest(
                    body=body,
                    headers=request.headers,
                    query=request.query,
                    method=request.method,
                    path=request.path,
                    remote=request.remote,
                )
                outcome = await self.ingest(webhook)
        except Exception:
            self._counter(
                "error"
            ).inc()  # answered 503 by the json_errors middleware, which logs it
            raise
        (self._outcomes.get(outcome.label) or self._counter(outcome.label)).inc()
        response = web.json_response(outcome.body, status=outcome.status)
        if outcome.retry_after is not None:
            response.headers["Retry-After"] = str(outcome.retry_after)
        if outcome.status < 300:
            self._ack_latency.observe(time.monotonic() - started)
        elif body is None and outcome.label == "invalid":
            response.force_close()  # the body's framing cannot be trusted (see _unreadable)
        return response

    def _read(self, request: web.Request) -> Awaitable[bytes]:
        """The whole body: at once if it arrived with the headers, else within read_timeout."""
        limit = self.limits.max_body_bytes
        length = request.content_length  # a property that parses the header on every read
        if length is not None and length > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=length)
        if request.content.is_eof():  # the whole body arrived with the headers: no timer
            return request.read()
        return self._read_within(request, float(self.limits.read_timeout))

    @staticmethod
    async def _read_within(request: web.Request, seconds: float) -> bytes:
        async with asyncio.timeout(seconds):
            return await request.read()

    def _unreadable(self, request: web.Request, exc: Exception) -> Outcome:
        """The outcome of a body that cannot be had."""
        limit = self.limits.max_body_bytes
        if isinstance(exc, web.HTTPRequestEntityTooLarge):
            if request.content_length is not None and request.content_length > limit:
                message = f"body of {request.content_length} bytes exceeds the limit of {limit}"
            else:
                message = f"body exceeds the limit of {limit} bytes"
            return Outcome.refusal("too_large", 413, "payload_too_large", message)
        if isinstance(exc, RequestPayloadError):
            # a body that does not decode as its Content-Encoding says (or a broken chunked
            # framing): the sender's mistake, and sending it again will not mend it
            detail = str(exc.args[0] if exc.args else exc).split("\n")[-1].strip()
            # the connection is closed after the answer; marking the body read spares aiohttp
            # draining a stream that only raises again
            request.content.feed_eof()
            message = f"the body cannot be read: {detail}"
            return Outcome.refusal("invalid", 400, "invalid_payload", message)
        if isinstance(exc, ConnectionError):
            # the client went away mid-body (or cut a chunked body short): routine on the
            # internet, and nobody is left to answer
            log.info("source %s: the client disconnected before its body was received", self.name)
            message = "the body was not received whole"
            return Outcome.refusal("client_disconnected", 400, "client_disconnected", message)
        if isinstance(exc, TimeoutError):
            message = f"body not received within {float(self.limits.read_timeout):g}s"
            return Outcome.refusal("timeout", 408, "request_timeout", message)
        raise exc  # another HTTP error: the json_errors middleware answers it


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive", "version": __version__})


async def readyz(request: web.Request) -> web.Response:
    try:
        await within_deadline(request.app[CONFIG], request.app[STORE].ping(), "ping")
    except StoreUnavailable as exc:
        return error_response(503, "store_unavailable", str(exc), retry_after=5)
    return web.json_response({"status": "ready"})


async def metrics_view(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    store = request.app[STORE]
    config = request.app[CONFIG]
    depth: dict[str, dict[str, int]] | None
    try:
        depth = await within_deadline(config, store.queue_depth(), "queue depth")
    except StoreUnavailable as exc:
        log.warning("metrics: cannot read the queue depth: %s", exc)
        depth = None
    metrics.queue_depth.clear()
    # unknown is not zero: while the store does not answer the depth samples are left out
    # (a backlog or dead-letter alert must not clear during an outage); store_up says why
    metrics.store_up.set(0 if depth is None else 1)
    for sink in config.sinks if depth is not None else ():
        counts = depth.get(sink, {}) if depth is not None else {}
        for state in ("pending", "inflight", "dead"):
            metrics.queue_depth.labels(sink, state).set(counts.get(state, 0))
    metrics.pending_writes.set(store.pending_writes)
    if depth is not None:  # the store answers: circuit state and paused time (circuit.py)
        with contextlib.suppress(StoreUnavailable, TimeoutError):
            await within_deadline(config, observe(store, config.sinks, metrics), "sink control")
    return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")


def create_app(
    config: Config,
    *,
    pm: pluggy.PluginManager,
    store: Store | None = None,
    deliver: bool = True,
    ingest: bool = True,
) -> web.Application:
    """The eventrouter application for ``config``; ``deliver=False`` receives only."""
    app = web.Application(client_max_size=config.server.max_body_bytes, middlewares=[json_errors])
    app[CONFIG] = config
    app[PLUGIN_MANAGER] = pm
    app[METRICS] = Metrics()
    app[REDACTOR] = Redactor(config.secrets)
    app[STORE] = store or create_store(config.store, base_dir=config.base_dir)
    app[DISPATCHER] = Dispatcher(
        store=app[STORE],
        sinks=config.sinks if deliver else {},
        pm=pm,
        metrics=app[METRICS],
        redactor=app[REDACTOR],
        operator=OperatorEvents(routes=config.routes, store=app[STORE], notify=_later(app)),
    )
    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(_http_ctx)
    app.cleanup_ctx.append(_dispatcher_ctx)
    app.cleanup_ctx.append(_maintenance_ctx)
    if ingest:
        for name, source in config.sources.items():
            pipeline = Ingest(
                name,
                source,
                config=config,
                pm=pm,
                store=app[STORE],
                notify=app[DISPATCHER].notify,
            )
            receiver = _Receiver(pipeline, limits=config.server, metrics=app[METRICS])
            app.router.add_post(config.source_paths[name], receiver.handle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    return app


def _later(app: web.Application) -> Callable[[Iterable[str]], None]:
    """Wake the workers of sinks an operator event was queued for (the dispatcher is made
    after the operator events it is given)."""
    return lambda sinks: app[DISPATCHER].notify(sinks)


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    # a store server that is down at start is not fatal: /readyz and ingest answer 503 until it
    # answers, then everything works without a restart
    await app[STORE].open(lazy=True)
    yield
    await app[STORE].close()


async def _http_ctx(app: web.Application) -> AsyncIterator[None]:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with aiohttp.ClientSession(
        timeout=timeout, headers={"User-Agent": f"eventrouter/{__version__}"}
    ) as session:
        app[HTTP] = session
        yield


async def _dispatcher_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    context = SinkContext(
        http=app[HTTP], base_dir=Path(config.base_dir), logger=logging.getLogger("eventrouter.sink")
    )
    dispatcher = app[DISPATCHER]
    await dispatcher.start(context)
    yield
    await dispatcher.stop(grace=float(config.server.shutdown_timeout))


async def _maintenance_ctx(app: web.Application) -> AsyncIterator[None]:
    """Forget expired idempotency keys and old delivered events, every ten minutes."""
    store = app[STORE]
    retention = float(app[CONFIG].store.retention)

    stop = asyncio.Event()

    async def run() -> None:
        while not stop.is_set():
            try:
                removed = await store.purge(retention=retention)
                if removed:
                    log.info("purged %d delivered events older than the retention", removed)
            except StoreUnavailable as exc:
                log.warning("purge failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(600):
                    await stop.wait()

    task = asyncio.create_task(run(), name="eventrouter-maintenance")
    yield
    # a cancellation can be lost inside redis-py (see cancel_and_wait): the event ends the loop
    stop.set()
    await cancel_and_wait(task)
