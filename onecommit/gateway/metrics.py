"""Prometheus metrics of the gateway, on a registry the app factory injects."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from onecommit.gateway.router import weights
from onecommit.serving.state import DesiredState

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("model", "variant", "version")
        self.requests = Counter("onecommit_gateway_requests", "Inference requests",
                                (*labels, "code"), registry=registry)
        self.errors = Counter("onecommit_gateway_errors", "Inference requests answered 5xx",
                              labels, registry=registry)
        self.latency = Histogram("onecommit_gateway_request_seconds", "Inference latency",
                                 labels, buckets=_LATENCY_BUCKETS, registry=registry)
        self.shadow = Counter("onecommit_gateway_shadow_comparisons",
                              "Shadow comparisons by result", ("model", "result"),
                              registry=registry)
        self.weight = Gauge("onecommit_gateway_traffic_weight", "Share of traffic per variant",
                            ("model", "variant"), registry=registry)

    def publish_weights(self, state: DesiredState) -> None:
        for variant, weight in weights(state.policy).items():
            self.weight.labels(state.model, variant).set(weight)

    def series(self, model: str, variant: str, version: str, status: int) -> Series:
        labels = (model, variant, version)
        return Series(self.requests.labels(*labels, str(status)), self.latency.labels(*labels),
                      self.errors.labels(*labels))


@dataclass(frozen=True)
class Series:
    """The metric children of one (model, variant, version, status)."""

    requests: Counter
    latency: Histogram
    errors: Counter

    def observe(self, seconds: float, error: bool) -> None:
        self.requests.inc()
        self.latency.observe(seconds)
        if error:
            self.errors.inc()
