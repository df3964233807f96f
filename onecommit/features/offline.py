"""Feast work that runs in the `feast` environment, called from the platform's environment: the
two cannot share a process (Feast needs numpy>=2, the platform and Triton pin numpy<2)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from onecommit.errors import OnecommitError
from onecommit.features.settings import FeatureSettings
from onecommit.platform.envs import env_python


class FeastJobError(OnecommitError):
    """A Feast job failed; the message carries the tail of its output."""


def run_job(settings: FeatureSettings, command: str, *args: str) -> dict[str, float]:
    """Run `onecommit.features.feast_job <command>` in the feast environment; its JSON report."""
    python = env_python(settings, "feast")
    if not python.exists():
        raise FeastJobError(f"the feast environment is missing at {python.parent.parent}: run "
                            "`invoke envs --name feast` or `invoke optional --on`")
    argv = [str(python), "-m", "onecommit.features.feast_job", command,
            "--repo", str(settings.feast_repo), "--yaml", str(settings.store_yaml()), *args]
    result = subprocess.run(argv, capture_output=True, text=True, check=False,
                            env={**os.environ, **settings.feast_environment()})
    if result.returncode != 0:
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-4:])
        raise FeastJobError(f"feast {command} failed: {tail}")
    report: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def training_set(settings: FeatureSettings) -> tuple[NDArray[np.float32], NDArray[Any]]:
    """Features (float32, the model's input type) and labels of every patient, in row order,
    from a point-in-time join against Feast's offline store."""
    with tempfile.TemporaryDirectory(prefix="onecommit-training-set-") as tmp:
        out = Path(tmp) / "training_set.npz"
        run_job(settings, "training-set", "--out", str(out))
        with np.load(out, allow_pickle=False) as frame:
            return frame["features"].astype(np.float32), frame["labels"]
