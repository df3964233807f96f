"""Every `invoke bench` in its short mode, as a user runs it, on the session's platform: a bench
that no test runs rots unseen (the gateway bench crashed for weeks on an environment that could
not serve ONNX). The short runs' figures are no figures; what is checked is that each bench
runs every scenario to the end and writes its report, and the properties that hold at any
length."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from onecommit.settings import PROJECT_ROOT, Settings

pytestmark = [pytest.mark.e2e, pytest.mark.platform, pytest.mark.timeout(1800)]

INVOKE = Path(sys.executable).parent / "invoke"
FIGURES = PROJECT_ROOT / "docs" / "bench"


def short_bench(settings: Settings, what: str) -> dict[str, Any]:
    """`invoke bench <what> --short` against the settings' platform; its report."""
    started = time.time()
    environment = {**os.environ, **settings.as_environment()}
    done = subprocess.run([str(INVOKE), "bench", what, "--short"], cwd=PROJECT_ROOT,
                          env=environment, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=900, check=False)
    assert done.returncode == 0, f"bench {what} exited {done.returncode}:\n{done.stdout[-3000:]}" \
                                 f"\n{done.stderr[-3000:]}"
    figures = FIGURES / f"{what}-short.json"
    assert figures.stat().st_mtime >= started, f"{figures} was not written by this run"
    assert (FIGURES / f"{what}-short.png").stat().st_mtime >= started
    return json.loads(figures.read_text())


def test_gateway_bench_measures_every_endpoint_and_reloads_without_failures(
        platform: Settings) -> None:
    result = short_bench(platform, "gateway")
    measured = {cell["target"] for cell in result["cells"]}
    assert measured == {"triton-direct", "gateway", "mlflow-serve", "gateway-grpc", "gateway-onnx"}
    assert all(cell["requests"] > 0 and cell["failed"] == 0 for cell in result["cells"])
    assert result["reload"]["reloads"] == 2
    assert result["reload"]["failed"] == 0
    split = result["canary_split"]
    assert split["requests"] == 1_000
    assert split["failed"] == 0
    assert 0 < split["challenger"] < 1_000


def test_loop_bench_times_a_good_and_a_bad_commit(platform: Settings) -> None:
    result = short_bench(platform, "loop")
    outcomes = [(commit["kind"], commit["outcome"]) for commit in result["commits"]]
    assert outcomes == [("good", "promoted"), ("bad", "rolled_back")]
    assert result["summary"]["promoted"]["push_to_promoted"]["n"] == 1


def test_analysis_bench_judges_every_policy_without_a_platform() -> None:
    result = short_bench(Settings(), "analysis")
    assert set(result["policies"]) == {"today", "flagger", "fixed_horizon", "sequential"}
    assert result["rollouts_per_policy"] > 0
    assert result["targets"]
