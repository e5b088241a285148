"""Prometheus metrics of one server (its own registry: nothing process-global)."""

from __future__ import annotations

from collections.abc import Callable


class Metrics:
    def __init__(self, queue_depth: Callable[[], float], active: Callable[[], float]):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("tunesmith_requests", "HTTP requests by path and status",
                                ["path", "status"], registry=self.registry)
        buckets = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
        self.latency = Histogram("tunesmith_request_latency_seconds", "Generation latency, arrival to last token",
                                 ["endpoint"], buckets=buckets, registry=self.registry)
        self.first_token = Histogram("tunesmith_time_to_first_token_seconds", "Arrival to first token",
                                     ["endpoint"], buckets=buckets, registry=self.registry)
        self.prompt_tokens = Counter("tunesmith_prompt_tokens", "Prompt tokens processed", registry=self.registry)
        self.completion_tokens = Counter("tunesmith_completion_tokens", "Tokens generated", registry=self.registry)
        self.log_failures = Counter("tunesmith_log_failures", "Request-log rows not committed in time",
                                    registry=self.registry)
        Gauge("tunesmith_queue_depth", "Requests waiting for a batch slot",
              registry=self.registry).set_function(queue_depth)
        Gauge("tunesmith_active_sequences", "Sequences being decoded", registry=self.registry).set_function(active)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
