"""Prometheus metrics of one server: requests, errors, latency and RTF histograms, queue depth."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)
RTF_BUCKETS = (0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("voxport_requests_total", "HTTP requests answered", ["endpoint", "status"],
                                registry=self.registry)
        self.errors = Counter("voxport_errors_total", "Requests answered with an error", ["endpoint", "type"],
                              registry=self.registry)
        self.latency = Histogram("voxport_request_seconds", "Time to answer a request", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.rtf = Histogram("voxport_rtf", "Real-time factor of speech made (compute s / audio s)", ["model"],
                             buckets=RTF_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("voxport_queue_depth", "Jobs waiting or running per model", ["model"],
                                 registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
