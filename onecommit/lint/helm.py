"""`helm template` and `helm lint` of the tree's charts, each render once however often asked.

A render is a chart with the values Argo CD would give it (value files, inline values, helm
parameters) in a namespace, under a label findings name it by. Charts with an upstream
dependency that is not vendored render without it (upstream.py).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from onecommit.commands import run
from onecommit.lint import Finding, upstream


def is_template(path: Path) -> bool:
    """A Helm template: under a chart's templates/ (not YAML until rendered)."""
    return any(parent.name == "templates" and (parent.parent / "Chart.yaml").is_file()
               for parent in path.parents)

Doc = dict[str, Any]
_SOURCE_COMMENT = re.compile(r"^# Source: (\S+)", re.MULTILINE)


def rel(root: Path, path: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class Render:
    chart_dir: Path
    label: str
    values: tuple[Path, ...]
    namespace: str
    release: str
    # `--set` parameters, in order, and inline values (YAML), as an Application gives them.
    parameters: tuple[tuple[str, str], ...] = ()
    inline_values: str = ""

    @property
    def chart(self) -> str:
        return self.chart_dir.name

    def file(self, root: Path) -> str:
        """The file a finding about the whole render names: its last values file."""
        return rel(root, self.values[-1] if self.values else self.chart_dir / "values.yaml")


@dataclass
class Rendered:
    """One render's objects, each with the template file it came from."""

    render: Render
    objects: list[tuple[str, Doc]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.render.label


def _escape(value: str) -> str:
    """A `--set` value taken literally, as Argo CD passes parameters (commas would split it)."""
    return value.replace("\\", "\\\\").replace(",", "\\,")


def _error(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines()
             if ln.strip() and not ln.startswith(("==>", "[INFO]")) and "chart(s) linted" not in ln]
    return " | ".join(lines)[:600]


class Helm:
    """Renders and lints through one helm binary; scratch holds charts copied without their
    dependencies and inline values files."""

    def __init__(self, root: Path, helm: Path, scratch: Path) -> None:
        self.root, self._helm, self._scratch = root, helm, scratch
        self._done: dict[Render, Rendered | Finding] = {}
        self._inline_files = 0

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run([self._helm, *args], timeout_s=120, check=False)

    def _flags(self, render: Render) -> list[str]:
        flags = [a for v in render.values for a in ("-f", str(v))]
        if render.inline_values:
            self._inline_files += 1
            inline = self._scratch / f"inline-values-{self._inline_files}.yaml"
            inline.write_text(render.inline_values)
            flags += ["-f", str(inline)]
        return flags + [a for k, v in render.parameters for a in ("--set", f"{k}={_escape(v)}")]

    def template(self, render: Render) -> Rendered | Finding:
        """The render's objects, or the finding saying why helm could not render it."""
        if render not in self._done:
            chart_dir = upstream.renderable(render.chart_dir, self._scratch)
            out = self._run("template", render.release, str(chart_dir), "--namespace",
                            render.namespace, *self._flags(render))
            self._done[render] = (self._parse(render, out.stdout) if out.returncode == 0 else
                                  Finding(render.file(self.root), render.label,
                                          "helm template: " + _error(out.stderr)))
        return self._done[render]

    def _parse(self, render: Render, stdout: str) -> Rendered:
        result = Rendered(render)
        for chunk in re.split(r"^---\s*$", stdout, flags=re.MULTILINE):
            doc = yaml.safe_load(chunk)
            if isinstance(doc, dict):
                source = _SOURCE_COMMENT.search(chunk)
                where = (rel(self.root, render.chart_dir.parent / source.group(1)) if source
                         else rel(self.root, render.chart_dir))
                result.objects.append((where, doc))
        return result

    def lint(self, render: Render) -> list[Finding]:
        chart_dir = upstream.renderable(render.chart_dir, self._scratch)
        out = self._run("lint", "--strict", str(chart_dir), *self._flags(render))
        if out.returncode == 0:
            return []
        return [Finding(render.file(self.root), render.label,
                        f"helm lint: {_error(out.stdout + out.stderr)}")]

    @property
    def renders(self) -> list[Rendered]:
        """Every successful render so far, in the order they were asked for."""
        return [r for r in self._done.values() if isinstance(r, Rendered)]
