"""The import contracts (pyproject.toml's [tool.importlinter]) hold on this tree, and each one
bites: a copy of the package with one forbidden import planted fails `lint-imports`, naming the
contract it breaks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from onecommit.settings import PROJECT_ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # The copy first on the path: grimp reads the package it finds there, not the installed one.
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--config", "pyproject.toml"],
                          cwd=root, capture_output=True, text=True, check=False, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(root)})


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(PROJECT_ROOT / "onecommit", tmp_path / "onecommit",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT_ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_contracts_hold_on_the_tree(tree: Path) -> None:
    result = _lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "planted", "contract"), [
    # Desired state reaching up into the gateway for a word it should take from the vocabulary.
    ("serving/state.py", "from onecommit.gateway import strata", "Layers only import downwards"),
    # The lifecycle asking the sync for a DAG id.
    ("lifecycle/rollout.py", "from onecommit import sync",
     "The lifecycle never imports the sync or the platform"),
    # The gateway, which runs without MLflow, importing it.
    ("gateway/variants.py", "import mlflow",
     "The gateway imports only the serving vocabulary, desired state and core utilities"),
    # A factory back in the base module its backends import.
    ("gateway/backends.py", "from onecommit.gateway import grpc_backend",
     "No import circles, at any depth of the package"),
])
def test_a_planted_import_breaks_its_contract(tree: Path, module: str, planted: str,
                                              contract: str) -> None:
    path = tree / "onecommit" / module
    path.write_text(path.read_text() + f"\n{planted}  # planted by the test\n")
    result = _lint_imports(tree)
    assert result.returncode != 0, result.stdout
    # The report wraps long contract names over lines.
    report = " ".join(result.stdout.split())
    assert f"{contract} BROKEN" in report, result.stdout
