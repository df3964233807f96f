"""Benchmark figures: latency summaries, the targets they are judged against, and the JSON and
PNG written under docs/bench/. Pure functions over measured numbers; nothing here measures."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from onecommit.gateway.statistics import quantile

# The three ways the same model is served, as the report names them.
DIRECT, GATEWAY, MLFLOW = "triton-direct", "gateway", "mlflow-serve"


@dataclass(frozen=True)
class Summary:
    """One measured cell: a target at a number of connections."""

    target: str
    connections: int
    requests: int
    failed: int
    elapsed_s: float
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float


def summarize(target: str, connections: int, latencies_ms: Sequence[float], failed: int,
              elapsed_s: float) -> Summary:
    """rps counts every request sent, answered or not; quantiles are over answered ones."""
    if not latencies_ms:
        raise ValueError(f"{target} at {connections} connection(s): no request was answered")
    requests = len(latencies_ms) + failed
    return Summary(target=target, connections=connections, requests=requests, failed=failed,
                   elapsed_s=round(elapsed_s, 3), rps=round(requests / elapsed_s, 1),
                   p50_ms=round(_q(latencies_ms, 0.5), 3), p99_ms=round(_q(latencies_ms, 0.99), 3),
                   max_ms=round(max(latencies_ms), 3))


def _q(values: Sequence[float], q: float) -> float:
    value = quantile(values, q)
    assert value is not None  # summarize refuses empty samples first
    return value


@dataclass(frozen=True)
class Target:
    """A goal: `measured` must be at most (`at_most`) or at least (`at_least`) `limit`."""

    name: str
    measured: float
    limit: float
    kind: Literal["at_most", "at_least"]
    unit: str

    @property
    def met(self) -> bool:
        return self.measured <= self.limit if self.kind == "at_most" else \
            self.measured >= self.limit

    @property
    def miss(self) -> float:
        """How far the measurement is on the wrong side of the limit; 0 when met."""
        gap = self.measured - self.limit if self.kind == "at_most" else \
            self.limit - self.measured
        return max(gap, 0.0)

    def line(self) -> str:
        sign = "≤" if self.kind == "at_most" else "≥"
        head = f"{self.name}: {self.measured:.3g}{self.unit} (target {sign} {self.limit:g}" \
               f"{self.unit})"
        return f"{head}: met" if self.met else f"{head}: MISSED by {self.miss:.3g}{self.unit}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met, "miss": round(self.miss, 4)}


@dataclass(frozen=True)
class ReloadRun:
    """Scenario 2: reloads of the challenger under steady load."""

    reloads: int
    requests: int
    failed: int
    worst_ms: float
    p99_ms: float
    # The same load just before, without reloads: the host's own worst case.
    quiet_worst_ms: float
    quiet_p99_ms: float


@dataclass(frozen=True)
class SplitRun:
    """Scenario 3: routed requests at a canary weight, counted by the variant header."""

    requests: int
    weight: float
    challenger: int
    failed: int

    @property
    def share(self) -> float:
        return self.challenger / (self.requests - self.failed)


def cell(cells: Sequence[Summary], target: str, connections: int) -> Summary:
    for summary in cells:
        if summary.target == target and summary.connections == connections:
            return summary
    raise KeyError(f"no measurement of {target} at {connections} connection(s)")


def targets(cells: Sequence[Summary], reload: ReloadRun, split: SplitRun) -> list[Target]:
    """The issue's targets for a 2-core machine, judged on the measured figures."""
    direct_1, gateway_1 = cell(cells, DIRECT, 1), cell(cells, GATEWAY, 1)
    direct_4, gateway_4 = cell(cells, DIRECT, 4), cell(cells, GATEWAY, 4)
    found = [
        Target("gateway p50 overhead over direct Triton, 1 connection",
               gateway_1.p50_ms - direct_1.p50_ms, 0.5, "at_most", " ms"),
        Target("gateway rps / direct Triton rps, 4 connections",
               gateway_4.rps / direct_4.rps, 0.7, "at_least", "x"),
    ]
    for connections in (1, 4):
        found.append(Target(f"gateway rps / mlflow serve rps, {connections} connection(s)",
                            cell(cells, GATEWAY, connections).rps
                            / cell(cells, MLFLOW, connections).rps, 3.0, "at_least", "x"))
    found += [
        Target("failed requests during challenger reloads", reload.failed, 0, "at_most", ""),
        Target("worst latency during challenger reloads", reload.worst_ms, 100, "at_most",
               " ms"),
        Target(f"challenger share at canary {split.weight:.0%}, off by",
               abs(split.share - split.weight) * 100, 2, "at_most", " points"),
    ]
    return found


def machine(load_before: tuple[float, float, float],
            load_after: tuple[float, float, float]) -> dict[str, Any]:
    """What the figures were taken on; load averages say how busy the host was."""
    return {"cpus": os.cpu_count(), "cpu_model": _cpu_model(), "system": platform.platform(),
            "python": platform.python_version(), "load_average_before": load_before,
            "load_average_after": load_after}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_json(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=_plain) + "\n")


def _plain(value: object) -> object:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)  # type: ignore[call-overload]
    raise TypeError(f"cannot write {type(value).__name__} to the report")


def table(cells: Sequence[Summary]) -> str:
    """The figures as a Markdown table, for the console and the README."""
    rows = ["| target | connections | rps | p50 ms | p99 ms | failed |",
            "|---|---:|---:|---:|---:|---:|"]
    rows += [f"| {c.target} | {c.connections} | {c.rps:.0f} | {c.p50_ms:.2f} | {c.p99_ms:.2f} "
             f"| {c.failed} |" for c in cells]
    return "\n".join(rows)


def chart(path: Path, cells: Sequence[Summary], title: str) -> None:
    """rps and p50/p99 latency per target, side by side for each connection count."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(c.target for c in cells))
    counts = sorted({c.connections for c in cells})
    width = 0.8 / len(counts)
    figure, (rps_axis, latency_axis) = plt.subplots(1, 2, figsize=(12, 4.8))
    for index, connections in enumerate(counts):
        row = [cell(cells, name, connections) for name in names]
        offsets = [i + (index - (len(counts) - 1) / 2) * width for i in range(len(names))]
        rps_axis.bar(offsets, [c.rps for c in row], width, label=f"{connections} conn")
        latency_axis.bar(offsets, [c.p99_ms for c in row], width, alpha=0.35,
                         color=f"C{index}", label=f"p99, {connections} conn")
        latency_axis.bar(offsets, [c.p50_ms for c in row], width, color=f"C{index}",
                         label=f"p50, {connections} conn")
    for axis, label in ((rps_axis, "requests / s"), (latency_axis, "latency (ms, log)")):
        axis.set_xticks(range(len(names)), names, rotation=15)
        axis.set_ylabel(label)
        axis.legend(fontsize="small")
        axis.grid(axis="y", alpha=0.3)
    latency_axis.set_yscale("log")
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
