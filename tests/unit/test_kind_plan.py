"""`invoke up/down --profile kind`: the plan it prints without any tool, and its refusals."""

from __future__ import annotations

import base64
import json
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from invoke.context import Context
from invoke.exceptions import Exit

from onecommit.platform import kind
from onecommit.platform.kind import applications_ready
from onecommit.secrets.devkey import ACTIVE_KEY_LABEL, Seed, derive
from onecommit.settings import PROJECT_ROOT
from onecommit.tasks import platform

VENV_BIN = str(Path(sys.executable).parent)
# The kind profile's images: the components, each with its requirements file (docker/ also
# holds the compose profile's Debian-package images).
COMPONENTS = sorted(name for p in (PROJECT_ROOT / "docker").glob("*.Dockerfile")
                    if (PROJECT_ROOT / "requirements"
                        / f"{(name := p.name.removesuffix('.Dockerfile'))}.txt").is_file())


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    """The task as a user runs it, with only the project's venv on PATH: no docker, kind,
    kubectl, helm or git."""
    return subprocess.run([f"{VENV_BIN}/invoke", "-r", str(PROJECT_ROOT), *args],
                          env={"PATH": VENV_BIN, "HOME": "/tmp"}, capture_output=True, text=True,
                          check=False, timeout=120)


@pytest.fixture(scope="module")
def plan() -> list[str]:
    result = invoke("up", "--profile", "kind", "--dry-run")
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if not line.startswith("#")]


def test_dry_run_needs_no_tool_and_prints_commands(plan: list[str]) -> None:
    assert plan
    tools = {line.split()[0] for line in plan if " -m onecommit.secrets.devkey " not in line}
    assert tools == {"kind", "docker", "helm", "kubectl", "git"}


def _line(plan: list[str], start: str) -> int:
    (index,) = [i for i, line in enumerate(plan) if line.startswith(start)]
    return index


def test_the_sealing_key_is_installed_before_the_controller_starts(plan: list[str]) -> None:
    release = next(r for r in kind.Tree().prerequisites() if r["chart"] == "sealed-secrets")
    manifest = kind.Tree().sealing_key_manifest
    derive_key = next(i for i, line in enumerate(plan) if " -m onecommit.secrets.devkey secret "
                      in line)
    assert f"--namespace {release['namespace']} --out {manifest}" in plan[derive_key]
    install_key = _line(plan, f"kubectl --context kind-onecommit apply --namespace "
                              f"{release['namespace']} --filename {manifest}")
    controller = _line(plan, f"helm upgrade --install {release['name']} sealed-secrets ")
    assert derive_key < install_key < controller
    # The key stays the only one: the controller makes no new key a fresh clone cannot derive.
    assert """'--set-json=keyrenewperiod="0"'""" in plan[controller]


def test_cluster_comes_from_the_kind_config(plan: list[str]) -> None:
    assert plan[0].startswith(f"kind create cluster --name onecommit --config "
                              f"{PROJECT_ROOT / 'kind' / 'cluster.yaml'}")


def test_every_image_is_built_from_its_dockerfile_then_loaded(plan: list[str]) -> None:
    assert COMPONENTS == ["feast", "gateway", "mlflow", "platform", "triton"]
    for component in COMPONENTS:
        image = f"ghcr.io/onecommit/{component}:0.1.0"
        build = plan.index(f"docker build --file {PROJECT_ROOT}/docker/{component}.Dockerfile "
                           f"--tag {image} {PROJECT_ROOT}")
        load = plan.index(f"kind load docker-image {image} --name onecommit")
        assert build < load


def test_the_kind_key_seals_the_env_the_kind_root_runs() -> None:
    root = yaml.safe_load((PROJECT_ROOT / "gitops/bootstrap/root.yaml").read_text())
    assert root["spec"]["source"]["helm"]["valuesObject"]["env"] == Seed.load().env


def test_argocd_is_the_version_its_application_pins(plan: list[str]) -> None:
    values = yaml.safe_load((PROJECT_ROOT / "gitops/bootstrap/values.yaml").read_text())
    version = values["argocd"]["version"]
    install = [line for line in plan if line.startswith("helm upgrade --install argocd ")]
    assert len(install) == 1
    assert f"--version {version} " in install[0]
    assert "--values " + str(PROJECT_ROOT / "gitops/bootstrap/argocd-values.yaml") in install[0]


def test_repo_is_pushed_in_cluster_before_the_root_applications(plan: list[str]) -> None:
    push = next(i for i, line in enumerate(plan) if line.startswith("git ") and " push " in line)
    roots = sorted(p for p in (PROJECT_ROOT / "gitops/bootstrap").glob("*.yaml")
                   if yaml.safe_load(p.read_text()).get("kind") == "Application")
    applies = [plan.index(f"kubectl --context kind-onecommit apply --namespace argocd "
                          f"--filename {p}") for p in roots]
    assert roots == [PROJECT_ROOT / "gitops/bootstrap/root.yaml"]
    assert push < min(applies)
    assert "exec -i deployment/gitops-server" in plan[push]


def test_plan_ends_waiting_for_synced_and_healthy(plan: list[str]) -> None:
    assert plan[-1].startswith("kubectl --context kind-onecommit --namespace argocd get "
                               "applications.argoproj.io --output json")
    assert "until every Application is Synced and Healthy" in plan[-1]


def test_every_cluster_command_names_the_kind_context(plan: list[str]) -> None:
    for line in plan:
        if line.startswith("kubectl "):
            assert line.startswith("kubectl --context kind-onecommit "), line
        if line.startswith("helm "):
            assert "--kube-context kind-onecommit" in line, line


def test_missing_tools_stop_at_once_with_one_line() -> None:
    # In a child process: PATH is never changed in this one, whose session platform starts
    # programs from a thread meanwhile.
    result = invoke("up", "--profile", "kind")
    assert (result.returncode, result.stdout) == (1, "")  # stopped before the first step
    assert result.stderr.strip() == (
        "error: missing kind, docker, helm, kubectl, git: install them for the kind profile "
        "(or see the plan with --dry-run)")


def test_down_deletes_the_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    platform.down(Context(), profile="kind", dry_run=True)
    assert capsys.readouterr().out.splitlines()[1] == "kind delete cluster --name onecommit"


def test_unknown_profile_is_one_clear_line() -> None:
    with pytest.raises(Exit) as refused:
        platform.up(Context(), profile="k8s")
    assert refused.value.code == 2
    assert refused.value.message == (
        "invalid setting profile='k8s': Input should be 'local', 'kind' or 'compose' "
        "(fix the --profile flag or ONECOMMIT_PROFILE)")


def test_dry_run_is_refused_for_the_local_profile() -> None:
    with pytest.raises(Exit) as refused:
        platform.up(Context(), dry_run=True)
    assert refused.value.code == 2
    assert "add --profile kind" in str(refused.value.message)


def _applications(*states: tuple[str, str, str]) -> str:
    return json.dumps({"items": [{"metadata": {"name": name},
                                  "status": {"sync": {"status": sync},
                                             "health": {"status": health}}}
                                 for name, sync, health in states]})


def test_ready_needs_every_expected_application() -> None:
    ready = applications_ready({"root-core", "root-baseline"})
    assert not ready(_applications(("root-core", "Synced", "Healthy")))
    assert ready(_applications(("root-core", "Synced", "Healthy"),
                               ("root-baseline", "Synced", "Healthy")))


def test_ready_needs_every_application_synced_and_healthy() -> None:
    ready = applications_ready({"root-core"})
    assert not ready(_applications(("root-core", "Synced", "Healthy"),
                                   ("gateway-dev", "Synced", "Progressing")))
    assert not ready(_applications(("root-core", "OutOfSync", "Healthy")))
    assert not ready("")


FAKE_TOOL = """#!/bin/sh
# Records its command line; answers like the real tool where the plan reads the answer.
echo "$(basename "$0") $*" >> "$FAKE_LOG"
case "$(basename "$0") $*" in
  "kind get kubeconfig"*) exit "${FAKE_CLUSTER_MISSING:-1}" ;;
  "docker build"*) exit "${FAKE_BUILD_EXIT:-0}" ;;
  *"get applications.argoproj.io"*) cat "$FAKE_APPS" ;;
esac
"""


@pytest.fixture
def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """kind, docker, helm, kubectl and git replaced by recorders; returns the log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("kind", "docker", "helm", "kubectl", "git"):
        (bin_dir / tool).write_text(FAKE_TOOL)
        (bin_dir / tool).chmod(0o755)
    apps = tmp_path / "apps.json"
    apps.write_text(_applications(*((f"root-{n}", "Synced", "Healthy")
                                    for n in ("core", "baseline", "optional")),
                                  ("onecommit", "Synced", "Healthy"),
                                  ("argocd", "Synced", "Healthy")))
    log = tmp_path / "calls.log"
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("FAKE_APPS", str(apps))
    return log


def _faked(steps: list[kind.Step], log: Path) -> list[kind.Step]:
    """The plan with each tool called by its recorder's path. PATH is never changed: the
    session platform's thread starts programs (git among them) while unit tests run."""
    bin_dir = log.parent / "bin"

    def recorded(argv: tuple[str, ...]) -> tuple[str, ...]:
        return (str(bin_dir / argv[0]), *argv[1:]) if argv and (bin_dir / argv[0]).is_file() \
            else argv
    return [replace(s, argv=recorded(s.argv), unless=recorded(s.unless)) for s in steps]


def test_up_runs_the_plan_in_order(fake_tools: Path, tmp_path: Path) -> None:
    tree = kind.Tree(state_dir=tmp_path / "state")
    plan = kind.up_plan(tree)
    kind.execute(_faked(plan, fake_tools), dry_run=False, out=lambda _: None)
    calls = fake_tools.read_text().splitlines()
    # the probe of step 1, then every step once, in plan order (the key is derived for real)
    assert calls == [" ".join(plan[0].unless)] + [" ".join(s.argv) for s in plan
                                                  if s.argv[0] != sys.executable]
    manifest = tree.sealing_key_manifest
    assert stat.S_IMODE(manifest.stat().st_mode) == 0o600
    secret = yaml.safe_load(manifest.read_text())
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["labels"][ACTIVE_KEY_LABEL] == "active"
    assert secret["metadata"]["namespace"] == "kube-system"
    _, cert_pem = derive(Seed.load())
    assert secret["data"]["tls.crt"] == base64.b64encode(cert_pem).decode()


def test_a_done_step_is_skipped(fake_tools: Path, monkeypatch: pytest.MonkeyPatch,
                                tmp_path: Path) -> None:
    monkeypatch.setenv("FAKE_CLUSTER_MISSING", "0")
    kind.execute(_faked(kind.up_plan(kind.Tree(state_dir=tmp_path)), fake_tools), dry_run=False,
                 out=lambda _: None)
    assert not any(c.startswith("kind create cluster") for c in fake_tools.read_text().splitlines())


def test_a_failing_step_stops_the_plan(fake_tools: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_BUILD_EXIT", "3")
    with pytest.raises(kind.KindError, match=r"step failed \(exit 3\): build the platform image"):
        kind.execute(_faked(kind.up_plan(kind.Tree()), fake_tools), dry_run=False,
                     out=lambda _: None)
    assert fake_tools.read_text().splitlines()[-1].startswith("docker build")


def test_a_wait_that_never_holds_times_out_naming_the_listing(fake_tools: Path) -> None:
    wait = kind.up_plan(kind.Tree())[-1]
    never = kind.Step(wait.argv, wait.why, until=lambda _: False, timeout_s=0)
    with pytest.raises(kind.KindError, match=(
            r"timed out after 0s waiting until every Application is Synced and Healthy: "
            r"`\S*kubectl --context kind-onecommit --namespace argocd get "
            r"applications.argoproj.io` shows which are not")):
        kind.execute(_faked([never], fake_tools), dry_run=False, out=lambda _: None)
