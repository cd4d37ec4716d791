"""Prometheus metrics for one server, on a registry of its own.

No global registry: several servers (tests start many) live in one process.
Every front end records through the same ``Metrics`` object, so ``/metrics``
and ``INFO`` show RESP, HTTP and kvtext side by side.

``amber_connections{frontend}`` counts open client connections (sockets,
idle keep-alive ones included): RESP and kvtext count theirs as they open
and close, HTTP reads uvicorn's set of connections at scrape time
(:meth:`Metrics.count_connections`). Requests being served are
``amber_requests_in_flight``, a different thing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5,
)  # fmt: skip


class _DatabaseCollector(Collector):
    """Reads the database's own counters at scrape time (no double bookkeeping)."""

    def __init__(self, stats: Callable[[], dict[str, Any]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        try:
            stats = self._stats()
        except Exception:  # a closed database: scrape what the rest has
            return
        pipeline = stats.get("pipeline", {})
        yield GaugeMetricFamily("amber_revision", "Revision of the last change", stats["revision"])
        yield CounterMetricFamily("amber_fsyncs", "WAL fsyncs", pipeline.get("fsyncs", 0))
        yield CounterMetricFamily("amber_wal_flushes", "WAL flushes", pipeline.get("flushes", 0))
        yield CounterMetricFamily(
            "amber_wal_bytes", "Bytes appended to the log", pipeline.get("log_bytes", 0)
        )
        yield CounterMetricFamily(
            "amber_batches", "Batches committed and applied", pipeline.get("batches", 0)
        )
        keys = GaugeMetricFamily("amber_keys", "Live keys per table", labels=["table"])
        for table, count in stats.get("tables", {}).items():
            keys.add_metric([table], count)
        yield keys
        watch = stats.get("watch", {})
        if "watchers" in watch:
            yield GaugeMetricFamily("amber_watchers", "Open watches", watch["watchers"])
        jobs = GaugeMetricFamily(
            "amber_job_healthy", "1 when a background job runs normally", labels=["job"]
        )
        for name, health in stats.get("jobs", {}).items():
            jobs.add_metric([name], 1.0 if health.get("state") == "running" else 0.0)
        yield jobs


class Metrics:
    """Request counters and latency histograms per front end and command."""

    def __init__(self, stats: Callable[[], dict[str, Any]] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "amber_requests",
            "Requests served",
            ["frontend", "command", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "amber_request_seconds",
            "Request latency",
            ["frontend", "command"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.connections = Gauge(
            "amber_connections", "Open client connections", ["frontend"], registry=self.registry
        )
        self.in_flight = Gauge(
            "amber_requests_in_flight",
            "Requests being served (HTTP: open watch streams included)",
            ["frontend"],
            registry=self.registry,
        )
        if stats is not None:
            self.registry.register(_DatabaseCollector(stats))

    def count_connections(self, frontend: str, count: Callable[[], int]) -> None:
        """Let ``count()`` give ``amber_connections{frontend=…}`` at each scrape."""
        self.connections.labels(frontend).set_function(count)

    def observe(self, frontend: str, command: str, seconds: float, ok: bool = True) -> None:
        """Count one request and its latency."""
        self.requests.labels(frontend, command, "ok" if ok else "error").inc()
        self.latency.labels(frontend, command).observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of everything."""
        return generate_latest(self.registry)
