"""The offline lint passes on the real tree and bites on one seeded mistake per check."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from onecommit.platform.envs import ensure_env
from onecommit.settings import PROJECT_ROOT, Settings

TREE = ("charts", "gitops", "baseline", "kind")


@pytest.fixture(scope="module")
def lint_python() -> Path:
    # Settings() honours ONECOMMIT_STATE_DIR; the default is the fixed PROJECT_ROOT/.onecommit.
    return ensure_env(Settings(), "lint") / "bin" / "python"


def run_lint(python: Path, root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run(
        [str(python), "-m", "onecommit.lint", "--root", str(root),
         "--shared-dir", str(Settings().shared_dir), "--state-dir", str(Settings().state_dir)],
        capture_output=True, text=True, env=env, check=False, timeout=300,
    )


def test_real_tree_is_clean(lint_python: Path) -> None:
    result = run_lint(lint_python, PROJECT_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def _edit(path: str, old: str, new: str, count: int = 1) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        target = root / path
        text = target.read_text()
        assert old in text, f"seed anchor {old!r} missing from {path}"
        target.write_text(text.replace(old, new, count))
    return apply


def _drop_resources(root: Path) -> None:
    target = root / "charts/mlflow/templates/deployment.yaml"
    text = target.read_text()
    block = r"\n {10}resources:\n {12}\{\{- toYaml \.Values\.resources \| nindent 12 \}\}"
    text = re.sub(block, "", text)
    assert "resources:" not in text
    target.write_text(text)


def _plaintext_secret(root: Path) -> None:
    (root / "baseline/minio/root-secret.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: minio-root\n"
        "stringData:\n  rootPassword: hunter2\n")


SEEDS: dict[str, tuple[Callable[[Path], None], str, str, str]] = {
    # name: (mutation, file named, object named, words of the problem)
    "chart-value-schema": (
        _edit("gitops/envs/dev/values/gateway.yaml", "minReplicas: 1", "minReplicas: one"),
        "gitops/envs/dev/values/gateway.yaml", "chart gateway (dev)", "minReplicas"),
    "deployment-without-resources": (
        _drop_resources, "charts/mlflow/templates/deployment.yaml", "Deployment/mlflow-dev",
        "no resources"),
    "forbidden-namespace": (
        _edit("gitops/appsets/core.yaml", "namespace: onecommit-dev", "namespace: onecommit-prod"),
        "gitops/appsets/core.yaml", "Application/gateway-dev", "not allowed by AppProject 'dev'"),
    "crd-field-typo": (
        _edit("gitops/bootstrap/core.yaml", "selfHeal: true", "selfHeel: true"),
        "gitops/bootstrap/core.yaml", "Application/root-core", "'selfHeel' was unexpected"),
    "plaintext-secret": (
        _plaintext_secret, "baseline/minio/root-secret.yaml", "Secret/minio-root",
        "plaintext Secret"),
}


@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_seeded_mistake_is_found(seed: str, lint_python: Path, tmp_path: Path) -> None:
    mutate, file, obj, problem = SEEDS[seed]
    for top in TREE:
        if (PROJECT_ROOT / top).is_dir():
            shutil.copytree(PROJECT_ROOT / top, tmp_path / top)
    mutate(tmp_path)
    result = run_lint(lint_python, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"{file}: ") and obj in line and problem in line
               for line in lines), f"no finding for {file} {obj} {problem!r} in:\n{result.stdout}"
