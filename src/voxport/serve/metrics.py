"""Prometheus metrics of one server: requests, errors, latency and RTF histograms, queue depth, and what the
workers do (batch sizes, cancelled jobs, generation steps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from voxport.serve.workers import WorkerEvents

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)
RTF_BUCKETS = (0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "voxport_requests_total", "HTTP requests answered", ["endpoint", "status"], registry=self.registry
        )
        self.errors = Counter(
            "voxport_errors_total", "Requests answered with an error", ["endpoint", "type"], registry=self.registry
        )
        self.latency = Histogram(
            "voxport_request_seconds",
            "Time to answer a request",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rtf = Histogram(
            "voxport_rtf",
            "Real-time factor of speech made (compute s / audio s)",
            ["model"],
            buckets=RTF_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "voxport_queue_depth", "Jobs waiting or running per model", ["model"], registry=self.registry
        )
        self.batch_size = Histogram(
            "voxport_batch_size",
            "Jobs generated together in one batch",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.cancelled = Counter(
            "voxport_cancelled_jobs_total",
            "Jobs whose client went away: skipped while queued or stopped while running",
            ["model", "stage"],
            registry=self.registry,
        )
        self.steps = Counter(
            "voxport_generation_steps_total",
            "Generation steps run (speech frames, chat tokens)",
            ["model"],
            registry=self.registry,
        )

    def watch(self, model: str, worker) -> None:
        """Follow one model's worker: its queue depth and what it reports."""
        self.queue_depth.labels(model).set_function(worker.depth)
        worker.events = WorkerEvents(
            batch=self.batch_size.labels(model).observe,
            cancelled=lambda stage: self.cancelled.labels(model, stage).inc(),
            steps=self.steps.labels(model).inc,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
