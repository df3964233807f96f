"""Prometheus metrics of the gateway, on a registry the app factory injects.

Workers that share one port (`ONECOMMIT_GATEWAY_WORKERS` > 1) each count their own requests;
a scrape reaches one of them at random, so the gateway runs them in prometheus_client's
multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, set by `python -m onecommit.gateway`) and every
scrape answers the sum over all of them."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess

from onecommit.strategies import weights

if TYPE_CHECKING:
    from onecommit.serving.state import DesiredState

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# prometheus_client reads it when first imported: set before the workers start.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


def share_between_workers(directory: Path) -> None:
    """Before the workers start: their metric files go to an emptied `directory` (counts of an
    earlier run must not be added to this one's)."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[MULTIPROCESS_DIR] = str(directory)


def exposed(registry: CollectorRegistry) -> CollectorRegistry:
    """What a scrape answers: this process's registry, or every worker's merged."""
    directory = os.environ.get(MULTIPROCESS_DIR)
    if directory is None:
        return registry
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged, directory)  # type: ignore[no-untyped-call]
    return merged


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
        # Every worker publishes the same weights (desired state's): the latest write stands.
        self.weight = Gauge("onecommit_gateway_traffic_weight", "Share of traffic per variant",
                            ("model", "variant"), registry=registry,
                            multiprocess_mode="mostrecent")

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
