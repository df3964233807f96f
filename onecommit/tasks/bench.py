"""`invoke bench gateway|loop|analysis`: serving speed, the loop's speed and the release
decisions' error rates and speed, written to docs/bench/."""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit

from onecommit.bench.config import BenchConfig, LoopConfig
from onecommit.tasks import task
from onecommit.tasks.platform import load_settings

BENCHES = ("gateway", "loop", "analysis")
# `--short`: enough simulated rollouts to run the decision code end to end in seconds (the
# CI's e2e tier), too few for the figures.
SHORT_ROLLOUTS_PER_CELL = 10


@task(positional=["what"], help={
    "what": f"the benchmark to run: {' or '.join(BENCHES)}",
    "duration": "gateway: seconds of load per measured cell",
    "other_backends": "gateway: also measure gateways on the gRPC and in-process ONNX backends",
    "name": "file name (without extension) of the JSON and PNG under docs/bench/ "
            "(default: the benchmark's name)",
    "baseline": "gateway: also measure the gateway as committed at this git ref",
    "good": "loop: good commits before the bad one",
    "short": "a smoke run, written as <benchmark>-short.* (git ignores them): analysis, a few "
             "hundred simulated rollouts instead of 10,500; gateway, each cell for 1.5 s, 2 "
             "reloads; loop, one good commit and the bad one",
})
def bench(c: Context, what: str, duration: float = BenchConfig.duration_s,
          other_backends: bool = True, name: str = "", baseline: str = "",
          good: int = LoopConfig.good, short: bool = False) -> None:
    """gateway: direct Triton vs the gateway vs `mlflow models serve` at 1 and 4 connections,
    reloads under load and the canary split. loop: N good commits and a bad one, timed stage
    by stage from the runs' records. Either brings the platform up (and down again) if
    needed. analysis: simulated rollouts judged by today's thresholds, Flagger's policy, a
    fixed-horizon test and the sequential tests; no platform."""
    if what not in BENCHES:
        raise Exit(f"unknown benchmark {what!r}: run `invoke bench gateway`, "
                   "`invoke bench loop` or `invoke bench analysis`", code=2)
    # A short run's figures are no figures: they never overwrite the committed ones.
    name = name or (f"{what}-short" if short else what)
    if what == "analysis":
        from onecommit.bench import analysis

        per_cell = (SHORT_ROLLOUTS_PER_CELL if short
                    else analysis.AnalysisBenchConfig.rollouts_per_cell)
        result = analysis.run(analysis.AnalysisBenchConfig(rollouts_per_cell=per_cell,
                                                           name=name))
    elif what == "loop":
        if good < 1:
            raise Exit("--good must be at least 1: the overhead is measured on good commits",
                       code=2)
        from onecommit.bench import loop  # what a task runs is imported when it runs

        config = LoopConfig(good=good, name=name)
        result = loop.run(load_settings(), config.shortened() if short else config)
    else:
        from onecommit.bench import gateway

        bench_config = BenchConfig(duration_s=duration, other_backends=other_backends, name=name,
                                   baseline_ref=baseline or None)
        result = gateway.run(load_settings(),
                             bench_config.shortened() if short else bench_config)
    met = sum(t["met"] for t in result["targets"])
    print(f"{met} of {len(result['targets'])} targets met; figures in docs/bench/{name}.json "
          "and .png")
