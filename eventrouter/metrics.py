"""Prometheus metrics, in a registry of each router's own (so tests and apps do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "eventrouter_requests",
            "Webhook requests by source and outcome (accepted, duplicate, dropped, unauthorized, invalid, too_large, timeout, client_disconnected, unavailable, error)",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "eventrouter_deliveries",
            "Delivery attempts by sink and outcome (delivered, retry, dead)",
            ["sink", "outcome"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "eventrouter_queue_depth",
            "Deliveries by sink and state (pending, inflight, dead)",
            ["sink", "state"],
            registry=self.registry,
        )
        self.store_up = Gauge(
            "eventrouter_store_up",
            "1 if the store answered the last scrape of /metrics, 0 if not (queue depth unknown)",
            registry=self.registry,
        )
        self.pending_writes = Gauge(
            "eventrouter_store_pending_writes",
            "Writes waiting for the disk",
            registry=self.registry,
        )
        self.ack_latency = Histogram(
            "eventrouter_ack_seconds",
            "Time from request received to 2xx sent (event durably stored)",
            ["source"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.delivery_latency = Histogram(
            "eventrouter_delivery_seconds",
            "Duration of delivery attempts",
            ["sink"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

        self.circuit_state = Gauge(
            "eventrouter_sink_circuit_state",
            "Circuit breaker of each sink: 0 closed, 1 half-open (probing), 2 open",
            ["sink"],
            registry=self.registry,
        )
        self.paused_seconds = Gauge(
            "eventrouter_sink_paused_seconds",
            "How long each sink has been paused (eventrouter sinks pause), 0 when it is not",
            ["sink"],
            registry=self.registry,
        )
        self.delivery_processes = Gauge(
            "eventrouter_delivery_processes",
            "Delivery processes ([server] delivery_processes) this serve process runs, alive now",
            registry=self.registry,
        )
        self.delivery_process_restarts = Counter(
            "eventrouter_delivery_process_restarts",
            "Delivery processes that exited while serve ran and were started again",
            registry=self.registry,
        )
        self.connections_open = Gauge(
            "eventrouter_connections_open",
            "Connections admitted and not yet closed",
            registry=self.registry,
        )
        self.connections_refused = Counter(
            "eventrouter_connections_refused",
            "Connections answered 503 at once, by the limit they met (max_connections, max_connections_per_client)",
            ["reason"],
            registry=self.registry,
        )
        self.connections_timed_out = Counter(
            "eventrouter_connections_timed_out",
            "Connections answered 408 and closed: request headers not received within header_timeout",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
