"""Prometheus metrics of one app instance (its own registry, so several apps can coexist).

Under ``--workers N`` each worker process counts its own requests: a scrape of ``/metrics``
answers for the worker that took its connection, named by ``gpuyard_process_info{pid}``.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

MAX_SERIES = 10_000  # route templates x methods x statuses; a bound, should anything vary
BATCH = 256  # requests observed before they are counted (and always before a render)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gpuyard_http_requests_total",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gpuyard_http_request_duration_seconds",
            "HTTP request latency by method and route template",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.controller_runs = Counter(
            "gpuyard_controller_items_total",
            "Rows processed by each controller, by outcome",
            ["controller", "outcome"],
            registry=self.registry,
        )
        Gauge(
            "gpuyard_process_info",
            "The server process these metrics are counted in (one of several under --workers)",
            ["pid"],
            registry=self.registry,
        ).labels(str(os.getpid())).set(1)

        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._observed: list[tuple[str, str, int, float]] = []

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Note a request; it is counted with the next ``BATCH`` (each update takes a lock and
        walks the buckets: once a request has its answer, its process should be free for the
        next one, or for the client it answered)."""
        self._observed.append((method, route, status, seconds))
        if len(self._observed) >= BATCH:
            self.count()

    def count(self) -> None:
        """Count the requests observed so far."""
        observed, self._observed = self._observed, []
        for method, route, status, seconds in observed:
            series = self._series.get((method, route, status))
            if series is None:  # labels() costs more than the update: look each series up once
                series = (
                    self.requests.labels(method, route, str(status)),
                    self.latency.labels(method, route),
                )
                if len(self._series) < MAX_SERIES:
                    self._series[(method, route, status)] = series
            series[0].inc()
            series[1].observe(seconds)

    def render(self) -> bytes:
        self.count()
        return generate_latest(self.registry)
