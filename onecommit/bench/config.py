"""What each benchmark measures and where it writes, apart from the benchmarks themselves so
the command line reads the defaults without importing what the benchmarks run."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from onecommit.settings import PROJECT_ROOT


@dataclass(frozen=True)
class BenchConfig:
    duration_s: float = 9.0
    # Slices each cell's duration is taken in, interleaved across endpoints.
    rounds: int = 3
    connections: tuple[int, ...] = (1, 4)
    reloads: int = 5
    reload_connections: int = 2
    split_requests: int = 10_000
    split_weight: float = 0.2
    # Also measure gateways on the gRPC and in-process ONNX backends (informational rows).
    other_backends: bool = True
    # Also measure the gateway as committed at this git ref (a before/after row).
    baseline_ref: str | None = None
    out_dir: Path = PROJECT_ROOT / "docs" / "bench"
    name: str = "gateway"
    spec_path: Path = PROJECT_ROOT / "gitops" / "envs" / "dev" / "models" / "breast-cancer.yaml"

    def shortened(self) -> BenchConfig:
        """`--short`: every scenario and endpoint once, too briefly for figures (the e2e tier
        runs it so that the bench cannot rot unseen)."""
        return replace(self, duration_s=1.5, reloads=2, split_requests=1_000)


@dataclass(frozen=True)
class LoopConfig:
    good: int = 3
    name: str = "loop"
    out_dir: Path = field(default_factory=lambda: PROJECT_ROOT / "docs" / "bench")

    def shortened(self) -> LoopConfig:
        """`--short`: one good commit and the bad one."""
        return replace(self, good=1)
