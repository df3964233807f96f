"""`invoke bench gateway`: serving speed, written to docs/bench/."""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit

from onecommit.bench.gateway import BenchConfig
from onecommit.bench.gateway import run as run_gateway_bench
from onecommit.tasks import task
from onecommit.tasks.platform import load_settings


@task(positional=["what"], help={
    "what": "the benchmark to run: gateway",
    "duration": "seconds of load per measured cell",
    "other_backends": "also measure gateways on the gRPC and in-process ONNX backends",
    "name": "file name (without extension) of the JSON and PNG under docs/bench/",
    "baseline": "also measure the gateway as committed at this git ref (before/after)",
})
def bench(c: Context, what: str, duration: float = BenchConfig.duration_s,
          other_backends: bool = True, name: str = "gateway", baseline: str = "") -> None:
    """Direct Triton vs the gateway vs `mlflow models serve` at 1 and 4 connections, reloads
    under load and the canary split; brings the platform up (and down again) if needed."""
    if what != "gateway":
        raise Exit(f"unknown benchmark {what!r}: the one there is is `invoke bench gateway`",
                   code=2)
    config = BenchConfig(duration_s=duration, other_backends=other_backends, name=name,
                         baseline_ref=baseline or None)
    result = run_gateway_bench(load_settings(), config)
    met = sum(t["met"] for t in result["targets"])
    print(f"{met} of {len(result['targets'])} targets met; figures in "
          f"{config.out_dir / name}.json and .png")
