"""The kind profile: `invoke up/down --profile kind`.

Each task is a plan, a list of steps built from the tree (kind/, docker/, gitops/bootstrap/),
then either printed (`--dry-run`, needs none of the tools) or run step by step. Every kubectl and
helm call names the kind cluster's context, so no other cluster is ever touched.

The sealed-secrets controller gets the key the dev secrets are sealed for before it starts: the
key pair derived from kind/sealing-key.yaml (onecommit/secrets/devkey.py) is applied as a
`kubernetes.io/tls` Secret labelled active in its namespace, so it never makes one of its own.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from onecommit.commands import run
from onecommit.errors import OnecommitError
from onecommit.lint.argocd import root_applications
from onecommit.platform.health import ComponentStatus
from onecommit.settings import PROJECT_ROOT, Settings

REGISTRY = "ghcr.io/onecommit"
COMPONENTS = ("platform", "mlflow", "triton", "gateway", "feast")  # docker/<c>.Dockerfile
ARGOCD_NAMESPACE = "argocd"
SEALED_SECRETS_CHART = "sealed-secrets"
# Where the cluster CA comes from (cert-manager's ClusterIssuer onecommit-ca).
ISSUERS = Path("baseline") / "cert-manager" / "issuers.yaml"
GITOPS_REPO_PATH = "/srv/git/onecommit.git"  # in the gitops-server pod (kind/gitops-server.yaml)
SYNC_TIMEOUT_S = 1800.0
POLL_S = 10.0


class KindError(OnecommitError):
    """The kind profile cannot go on; the message is one line naming the problem and the fix."""


@dataclass(frozen=True)
class Step:
    """One command of a plan; `unless` is a probe: when it succeeds the step is already done.
    `until` turns the step into a poll: run it until `until(stdout)` holds or the timeout."""

    argv: tuple[str, ...]
    why: str
    unless: tuple[str, ...] = ()
    until: Callable[[str], bool] | None = field(default=None, compare=False)
    timeout_s: float = SYNC_TIMEOUT_S

    def render(self) -> str:
        line = " ".join(_quote(a) for a in self.argv)
        if self.unless:
            line += f"   # unless: {' '.join(_quote(a) for a in self.unless)}"
        if self.until:
            line += f"   # repeated every {POLL_S:.0f}s until {self.why} (≤{self.timeout_s:.0f}s)"
        return line


def _quote(arg: str) -> str:
    return arg if arg and all(c.isalnum() or c in "-_./:=,@%+{}[]$" for c in arg) else repr(arg)


@dataclass(frozen=True)
class Tree:
    """What the plans read from the repository, and where they write (the state dir)."""

    root: Path = PROJECT_ROOT
    state_dir: Path = field(default_factory=lambda: Settings().state_dir)

    @property
    def cluster_name(self) -> str:
        return str(yaml.safe_load((self.root / "kind" / "cluster.yaml").read_text())["name"])

    @property
    def context(self) -> str:
        return f"kind-{self.cluster_name}"

    @property
    def image_tag(self) -> str:
        # The charts' default image tags are the project version.
        pyproject = tomllib.loads((self.root / "pyproject.toml").read_text())
        return str(pyproject["project"]["version"])

    def image(self, component: str) -> str:
        return f"{REGISTRY}/{component}:{self.image_tag}"

    def root_applications(self) -> list[tuple[Path, dict[str, Any]]]:
        """The Applications applied by hand, as the lint resolves the tree from them."""
        return root_applications(self.root)

    def argocd_chart(self) -> tuple[str, str, str]:
        """(repo, chart, version) of Argo CD, as the bootstrap chart pins it for the
        self-managing Application."""
        values = yaml.safe_load((self.root / "gitops" / "bootstrap" / "values.yaml").read_text())
        pin = values["argocd"]
        return str(pin["repo"]), str(pin["chart"]), str(pin["version"])

    @property
    def sealing_key_manifest(self) -> Path:
        """The controller's key Secret, written (0600) by the plan: it holds the private key."""
        return self.state_dir / "kind" / "sealed-secrets-key.yaml"

    def prerequisites(self) -> list[dict[str, Any]]:
        data = yaml.safe_load((self.root / "kind" / "prerequisites.yaml").read_text())
        return list(data["releases"])


def _helm_install(tree: Tree, name: str, chart: str, repo: str, version: str, namespace: str,
                  extra: Sequence[str] = ()) -> tuple[str, ...]:
    return ("helm", "upgrade", "--install", name, chart, "--repo", repo, "--version", version,
            "--namespace", namespace, "--create-namespace", "--kube-context", tree.context,
            "--wait", "--timeout", "10m", *extra)


def _kubectl(tree: Tree, *args: str) -> tuple[str, ...]:
    return ("kubectl", "--context", tree.context, *args)


def applications_ready(expected: set[str]) -> Callable[[str], bool]:
    """True once every Application exists, the expected ones included, all Synced and Healthy."""
    def check(stdout: str) -> bool:
        items = json.loads(stdout or "{}").get("items") or []
        status = {i["metadata"]["name"]: ((i.get("status") or {}).get("sync", {}).get("status"),
                                          (i.get("status") or {}).get("health", {}).get("status"))
                  for i in items}
        return expected <= status.keys() and all(s == ("Synced", "Healthy")
                                                 for s in status.values())
    return check


def _sealing_key_steps(tree: Tree, namespace: str) -> list[Step]:
    """The dev key pair into the controller's namespace, before the controller's first start."""
    manifest = str(tree.sealing_key_manifest)
    return [
        Step((sys.executable, "-m", "onecommit.secrets.devkey", "secret", "--root",
              str(tree.root), "--namespace", namespace, "--out", manifest),
             "derive the dev sealing key pair from kind/sealing-key.yaml (public seed, dev only)"),
        Step(_kubectl(tree, "apply", "--namespace", namespace, "--filename", manifest),
             "install it as the sealed-secrets controller's active key, before the controller "
             "starts"),
    ]


def up_plan(tree: Tree) -> list[Step]:
    kind_dir = tree.root / "kind"
    steps = [Step(("kind", "create", "cluster", "--name", tree.cluster_name, "--config",
                   str(kind_dir / "cluster.yaml"), "--wait", "120s"),
                  "create the kind cluster",
                  unless=("kind", "get", "kubeconfig", "--name", tree.cluster_name))]
    for component in COMPONENTS:
        steps.append(Step(("docker", "build", "--file",
                           str(tree.root / "docker" / f"{component}.Dockerfile"),
                           "--tag", tree.image(component), str(tree.root)),
                          f"build the {component} image from requirements/{component}.txt"))
    for component in COMPONENTS:
        steps.append(Step(("kind", "load", "docker-image", tree.image(component), "--name",
                           tree.cluster_name), f"load the {component} image into the nodes"))
    for release in tree.prerequisites():
        if release["chart"] == SEALED_SECRETS_CHART:
            steps += _sealing_key_steps(tree, str(release["namespace"]))
        values = [f"--set-json={k}={json.dumps(v, separators=(',', ':'))}"
                  for k, v in (release.get("values") or {}).items()]
        steps.append(Step(_helm_install(tree, str(release["name"]), str(release["chart"]),
                                        str(release["repo"]), str(release["version"]),
                                        str(release["namespace"]), values),
                          f"install {release['name']} (cluster prerequisite)"))
    steps.append(Step(_kubectl(tree, "apply", "--filename", str(tree.root / ISSUERS)),
                      "create the cluster CA (ClusterIssuer onecommit-ca) for the ingress "
                      "certificates"))
    repo, chart, version = tree.argocd_chart()
    steps.append(Step(_helm_install(tree, "argocd", chart, repo, version, ARGOCD_NAMESPACE,
                                    ("--values", str(tree.root / "gitops" / "bootstrap" /
                                                     "argocd-values.yaml"))),
                      "install Argo CD (then it manages itself: the argocd Application of "
                      "gitops/bootstrap)"))
    steps += [
        Step(_kubectl(tree, "apply", "--filename", str(kind_dir / "gitops-server.yaml")),
             "run the in-cluster git server"),
        Step(_kubectl(tree, "--namespace", ARGOCD_NAMESPACE, "rollout", "status",
                      "deployment/gitops-server", "--timeout=300s"), "wait for the git server"),
        Step(("git", "-C", str(tree.root), "-c", "protocol.ext.allow=always", "push", "--force",
              f"ext::kubectl --context {tree.context} --namespace {ARGOCD_NAMESPACE} exec -i "
              f"deployment/gitops-server -- %S {GITOPS_REPO_PATH}", "HEAD:refs/heads/main"),
             "push this checkout's HEAD as main to the in-cluster repository"),
    ]
    roots = tree.root_applications()
    steps += [Step(_kubectl(tree, "apply", "--namespace", ARGOCD_NAMESPACE, "--filename", str(p)),
                   f"apply the root Application ({p.relative_to(tree.root)})") for p, _ in roots]
    expected = {str(doc["metadata"]["name"]) for _, doc in roots}
    steps.append(Step(_kubectl(tree, "--namespace", ARGOCD_NAMESPACE, "get",
                               "applications.argoproj.io", "--output", "json"),
                      "every Application is Synced and Healthy",
                      until=applications_ready(expected)))
    return steps


def down_plan(tree: Tree) -> list[Step]:
    return [Step(("kind", "delete", "cluster", "--name", tree.cluster_name),
                 "delete the kind cluster (images, Argo CD and every layer with it)")]


def missing_tools(steps: Sequence[Step], search_path: str | None = None) -> list[str]:
    """The programs the plan runs that are not on PATH, in plan order."""
    names = dict.fromkeys(s.argv[0] for s in steps)
    return [n for n in names if shutil.which(n, path=search_path) is None]


def _run(step: Step) -> None:
    # The output goes to the terminal as it comes.
    result = run(step.argv, capture=False, check=False)
    if result.returncode != 0:
        raise KindError(f"step failed (exit {result.returncode}): {step.why}: {step.render()}")


def _poll(step: Step) -> None:
    """Repeat the step until its predicate holds; a failing call (an API server still busy with
    the new CRDs) counts as not yet."""
    assert step.until is not None
    deadline = time.monotonic() + step.timeout_s
    while True:
        result = run(step.argv, check=False)
        if result.returncode == 0 and step.until(result.stdout):
            return
        if time.monotonic() > deadline:
            listing = " ".join(step.argv[:-2])  # the poll without its --output json
            raise KindError(f"timed out after {step.timeout_s:.0f}s waiting until {step.why}: "
                            f"`{listing}` shows which are not")
        time.sleep(POLL_S)


def execute(steps: Sequence[Step], dry_run: bool, out: Callable[[str], None] = print) -> None:
    """Print the plan (dry run) or run it, stopping at the first failing step."""
    if dry_run:
        for number, step in enumerate(steps, 1):
            out(f"# {number}. {step.why}")
            out(step.render())
        return
    missing = missing_tools(steps)
    if missing:
        them = "it" if len(missing) == 1 else "them"
        raise KindError(f"missing {', '.join(missing)}: install {them} for the kind profile "
                        "(or see the plan with --dry-run)")
    for number, step in enumerate(steps, 1):
        out(f"[{number}/{len(steps)}] {step.why}")
        sys.stdout.flush()
        probe = run(step.unless, check=False) if step.unless else None
        if probe is not None and probe.returncode == 0:
            out("  already done")
        elif step.until:
            _poll(step)
        else:
            _run(step)


def statuses(tree: Tree | None = None) -> dict[str, ComponentStatus]:
    """Each Argo CD Application as `invoke status` shows a component: healthy when Synced and
    Healthy (what `up` waits for)."""
    tree = tree or Tree()
    listing = run(_kubectl(tree, "--namespace", ARGOCD_NAMESPACE, "get",
                           "applications.argoproj.io", "--output", "json"))
    found: dict[str, ComponentStatus] = {}
    for item in json.loads(listing.stdout or "{}").get("items") or []:
        status = item.get("status") or {}
        sync = status.get("sync", {}).get("status", "Unknown")
        health = status.get("health", {}).get("status", "Unknown")
        source = (item.get("spec") or {}).get("source") or {}
        found[item["metadata"]["name"]] = ComponentStatus(
            url=str(source.get("repoURL", "")), healthy=(sync, health) == ("Synced", "Healthy"),
            detail=f"{sync}, {health}", pid=None, version=source.get("targetRevision"),
            memory_mb=0.0)
    return found


def logs(name: str, lines: int = 50, follow: bool = False, tree: Tree | None = None) -> None:
    """The logs of the pods labelled `app.kubernetes.io/name=<name>`, in whichever namespace
    they run, printed as they come."""
    tree = tree or Tree()
    selector = f"app.kubernetes.io/name={name}"
    namespace = run(_kubectl(tree, "get", "pods", "--all-namespaces", "--selector", selector,
                             "--output", "jsonpath={.items[0].metadata.namespace}"),
                    check=False).stdout.strip()
    if not namespace:
        raise KindError(f"no pod labelled {selector} in cluster {tree.cluster_name}: see "
                        "`invoke status --profile kind` for the Applications")
    run(_kubectl(tree, "logs", "--namespace", namespace, "--selector", selector, "--tail",
                 str(lines), *(["--follow"] if follow else [])), capture=False)


def up(dry_run: bool = False, tree: Tree | None = None) -> None:
    execute(up_plan(tree or Tree()), dry_run)


def down(dry_run: bool = False, tree: Tree | None = None) -> None:
    execute(down_plan(tree or Tree()), dry_run)


