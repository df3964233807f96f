"""`invoke bench gateway|loop`: serving speed and the loop's speed, written to docs/bench/."""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit

from onecommit.bench.config import BenchConfig, LoopConfig
from onecommit.tasks import task
from onecommit.tasks.platform import load_settings

BENCHES = ("gateway", "loop")


@task(positional=["what"], help={
    "what": f"the benchmark to run: {' or '.join(BENCHES)}",
    "duration": "gateway: seconds of load per measured cell",
    "other_backends": "gateway: also measure gateways on the gRPC and in-process ONNX backends",
    "name": "file name (without extension) of the JSON and PNG under docs/bench/ "
            "(default: the benchmark's name)",
    "baseline": "gateway: also measure the gateway as committed at this git ref",
    "good": "loop: good commits before the bad one",
})
def bench(c: Context, what: str, duration: float = BenchConfig.duration_s,
          other_backends: bool = True, name: str = "", baseline: str = "",
          good: int = LoopConfig.good) -> None:
    """gateway: direct Triton vs the gateway vs `mlflow models serve` at 1 and 4 connections,
    reloads under load and the canary split. loop: N good commits and a bad one, timed stage
    by stage from the runs' records. Either brings the platform up (and down again) if
    needed."""
    if what not in BENCHES:
        raise Exit(f"unknown benchmark {what!r}: run `invoke bench gateway` or "
                   "`invoke bench loop`", code=2)
    settings = load_settings()
    name = name or what
    if what == "loop":
        if good < 1:
            raise Exit("--good must be at least 1: the overhead is measured on good commits",
                       code=2)
        from onecommit.bench import loop  # what a task runs is imported when it runs

        result = loop.run(settings, LoopConfig(good=good, name=name))
    else:
        from onecommit.bench import gateway

        result = gateway.run(settings, BenchConfig(
            duration_s=duration, other_backends=other_backends, name=name,
            baseline_ref=baseline or None))
    met = sum(t["met"] for t in result["targets"])
    print(f"{met} of {len(result['targets'])} targets met; figures in docs/bench/{name}.json "
          "and .png")
