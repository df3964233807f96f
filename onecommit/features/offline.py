"""Feast work that runs in the `feast` environment, called from the platform's environment: the
two cannot share a process (Feast needs numpy>=2, the platform and Triton pin numpy<2)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path, PurePath
from typing import Any

import numpy as np
from numpy.typing import NDArray

from onecommit.commands import CommandError, last_lines, run
from onecommit.errors import OnecommitError
from onecommit.features.settings import FeatureSettings


class FeastJobError(OnecommitError):
    """A Feast job failed; the message carries the tail of its output."""


def job_arguments(command: str, repo: PurePath, yaml_file: PurePath, *args: str) -> list[str]:
    """A Feast job's command line after the interpreter, on either profile."""
    return ["-m", "onecommit.features.feast_job", command, "--repo", str(repo),
            "--yaml", str(yaml_file), *args]


def job_report(stdout: str) -> dict[str, float]:
    """The job's result: the one JSON line it ends its output with."""
    lines = stdout.strip().splitlines()
    try:
        report: dict[str, float] = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise FeastJobError("the Feast job ended without its JSON result line: see its "
                            "output above (`invoke logs feast` on compose)") from None
    return report


def run_job(settings: FeatureSettings, command: str, *args: str) -> dict[str, float]:
    """Run `onecommit.features.feast_job <command>` in the feast environment; its JSON report."""
    python = settings.env_dir("feast") / "bin" / "python"
    if not python.exists():
        raise FeastJobError(f"the feast environment is missing at {python.parent.parent}: run "
                            "`invoke envs --name feast` or `invoke optional --on`")
    argv = [str(python), *job_arguments(command, settings.feast_repo, settings.store_yaml(),
                                        *args)]
    try:
        result = run(argv, env=settings.feast_environment())
    except CommandError as error:
        raise FeastJobError(f"feast {command} failed: {last_lines(error.output)}") from None
    return job_report(result.stdout)


def training_set(settings: FeatureSettings) -> tuple[NDArray[np.float32], NDArray[Any]]:
    """Features (float32, the model's input type) and labels of every patient, in row order,
    from a point-in-time join against Feast's offline store."""
    with tempfile.TemporaryDirectory(prefix="onecommit-training-set-") as tmp:
        out = Path(tmp) / "training_set.npz"
        run_job(settings, "training-set", "--out", str(out))
        with np.load(out, allow_pickle=False) as frame:
            return frame["features"].astype(np.float32), frame["labels"]
