"""The offline lint passes on the real tree and bites on one seeded mistake per check."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from onecommit.lint import policy
from onecommit.platform.envs import ensure_env
from onecommit.settings import PROJECT_ROOT, Settings

TREE = ("charts", "gitops", "baseline", "kind", "docker", "requirements", ".github", "compose")


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


def test_real_tree_is_clean(lint_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = lint_runs["real"]
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


def _copy_tree(target: Path) -> None:
    for top in TREE:
        if (PROJECT_ROOT / top).is_dir():
            shutil.copytree(PROJECT_ROOT / top, target / top)


def _assert_finding(output: str, file: str, obj: str, problem: str) -> None:
    assert any(line.startswith(f"{file}: ") and obj in line and problem in line
               for line in output.splitlines()), \
        f"no finding for {file} {obj} {problem!r} in:\n{output}"


def _drop_user(root: Path) -> None:
    target = root / "docker/gateway.Dockerfile"
    text = target.read_text()
    assert "\nUSER 10001:10001\n" in text
    target.write_text(text.replace("\nUSER 10001:10001\n", "\n"))


_mlflow_by_name = _edit("docker/mlflow.Dockerfile", "-r /app/requirements.txt", "mlflow==3.17.2")

# An installer inside a virtual environment is an installer too.
_feast_by_name = _edit("docker/feast.Dockerfile", "uv pip install",
                       "${FEAST_ENV}/bin/pip install feast==0.50.0 && uv pip install")

_sealed_elsewhere = _edit("gitops/envs/dev/sealed/gateway-admin-token.yaml",
                          "namespace: onecommit-dev", "namespace: onecommit-prod", count=2)


def _allow_listed(root: Path) -> None:
    """A Secret made outside git, listed as such, next to a reference to it."""
    _edit("gitops/envs/prod/values/triton.yaml", "credentialsSecretName: triton-s3",
          "credentialsSecretName: triton-s3-external")(root)
    (root / "gitops/external-secrets.yaml").write_text(
        "- namespace: onecommit-prod\n  name: triton-s3-external\n"
        "  madeBy: the platform team's object store\n")


# One mistake per check, each where it hides no other (a chart whose values fail its schema
# renders nothing, so that one is in prod): they are seeded together into one tree and linted
# once, since every lint run renders every chart and runs checkov (about 20 s).
SEEDS: dict[str, tuple[Callable[[Path], None], str, str, str]] = {
    # name: (mutation, file named, object named, words of the problem)
    # The trainer, where every commit's training runs, with a service-account token.
    "trainer-with-token": (
        _edit("charts/airflow/templates/trainer.yaml", "automountServiceAccountToken: false",
              "automountServiceAccountToken: true"),
        "charts/airflow/templates/trainer.yaml", "Deployment/airflow-dev-trainer",
        "mounts a service-account token: automountServiceAccountToken: false"),
    "chart-value-schema": (
        _edit("gitops/envs/prod/values/gateway.yaml", "minReplicas: 3", "minReplicas: three"),
        "gitops/envs/prod/values/gateway.yaml", "chart gateway (prod)", "minReplicas"),
    "deployment-without-resources": (
        _drop_resources, "charts/mlflow/templates/deployment.yaml", "Deployment/mlflow-dev",
        "no resources"),
    "forbidden-namespace": (
        _edit("gitops/appsets/templates/core.yaml", 'namespace: "onecommit-{{ $env }}"',
              'namespace: "onecommit-prod"'),
        "gitops/appsets/templates/core.yaml", "Application/gateway-dev",
        "not allowed by AppProject 'dev'"),
    "crd-field-typo": (
        _edit("gitops/bootstrap/root.yaml", "selfHeal: true", "selfHeel: true"),
        "gitops/bootstrap/root.yaml", "Application/onecommit", "'selfHeel' was unexpected"),
    # Every Application resolves: a chart path that is not in the tree.
    "application-chart-path": (
        _edit("gitops/appsets/templates/core.yaml", 'path: "charts/{{ $component }}"',
              'path: "chart/{{ $component }}"'),
        "gitops/appsets/templates/core.yaml", "ApplicationSet/core -> Application/gateway-dev",
        "source path 'chart/gateway' does not exist in the repo"),
    "plaintext-secret": (
        _plaintext_secret, "baseline/minio/root-secret.yaml", "Secret/minio-root",
        "plaintext Secret"),
    "dangling-secret-reference": (
        _edit("gitops/envs/prod/values/mlflow.yaml", "  credentialsSecretName: mlflow-s3\n",
              "  credentialsSecretName: mlflow-s3\nbackendStore:\n"
              "  # -- A Secret nothing seals.\n  secretName: mlflow-db\n"),
        "charts/mlflow/templates/deployment.yaml", "chart mlflow (prod) Deployment/mlflow-prod",
        "secretKeyRef of MLFLOW_BACKEND_STORE_URI reads Secret 'mlflow-db', which nothing "
        "defines in namespace onecommit-prod: define it in gitops/envs/prod/sealed/mlflow-db.yaml"),
    "sealed-secret-in-another-namespace": (
        _sealed_elsewhere, "charts/gateway/templates/deployment.yaml",
        "chart gateway (dev) Deployment/gateway-dev",
        "reads Secret 'gateway-admin-token', which nothing defines in namespace onecommit-dev "
        "(there is a SealedSecret in onecommit-prod: "
        "gitops/envs/dev/sealed/gateway-admin-token.yaml)"),
    "sealed-secret-outside-its-project": (
        _sealed_elsewhere, "gitops/envs/dev/sealed/gateway-admin-token.yaml",
        "Application/secrets-dev SealedSecret/gateway-admin-token",
        "namespace 'onecommit-prod' is not a destination of AppProject 'dev'"),
    "secret-key-name": (
        _edit("gitops/envs/dev/values/feast.yaml", "persistence:",
              "redis:\n  # -- A key the Secret does not have.\n  passwordSecretKey: pasword\n"
              "persistence:"),
        "charts/feast/templates/deployment.yaml", "chart feast (dev) Deployment/feast",
        "secretKeyRef of REDIS_PASSWORD reads key 'pasword' of Secret 'redis-auth', which "
        "gitops/envs/dev/sealed/optional/redis-auth.yaml does not define (its keys: password)"),
    "application-value-file": (
        _edit("gitops/appsets/templates/baseline.yaml", '{{ $component }}/values.yaml"',
              '{{ $component }}/value.yaml"'),
        "gitops/appsets/templates/baseline.yaml",
        "ApplicationSet/baseline -> Application/minio-baseline",
        "helm value file '$values/baseline/minio/value.yaml' does not exist in the repo"),
    "repository-url-written-out": (
        _edit("kind/cluster.yaml", "name: onecommit\n", "name: onecommit\n# Argo CD reads "
              "http://gitops-server.argocd.svc.cluster.local/onecommit.git\n"),
        "kind/cluster.yaml", "repository URL", "is written out here: it is named once, in "
        "gitops/bootstrap/root.yaml"),
    "certificate-issued-twice": (
        _edit("charts/gateway/templates/ingress.yaml", "  namespace: {{ .Release.Namespace }}\n",
              "  namespace: {{ .Release.Namespace }}\n  annotations:\n"
              "    cert-manager.io/cluster-issuer: onecommit-ca\n"),
        "charts/gateway/templates/ingress.yaml", "chart gateway (dev) Ingress/gateway-dev",
        "TLS Secret 'gateway-tls' is issued twice: by the Certificate in "
        "gitops/envs/dev/certificates.yaml"),
    "upstream-chart-value": (
        _edit("charts/airflow/values.yaml", "executor: KubernetesExecutor",
              "executor: KubernetesExecuter"),
        "charts/airflow/values.yaml", "chart airflow (default) dependency airflow",
        "airflow 1.18.0 values schema: at airflow.executor: 'KubernetesExecuter' does not match"),
    "vendor-chart-value-type": (
        _edit("gitops/envs/dev/values/redis.yaml", "size: 2Gi",
              "size: 2Gi\n      enabled: yes-please"),
        "gitops/envs/dev/values/redis.yaml", "chart redis (dev) dependency redis",
        "at redis.master.persistence.enabled: 'yes-please' is not of type 'boolean'"),
    "dashboard-metric-nobody-exports": (
        _edit("baseline/monitoring/dashboards/triton.json", "rate(nv_inference_exec_count{",
              "rate(nv_inference_exec_counts{"),
        "baseline/monitoring/dashboards/triton.json",
        "panel 'Batch size (inferences per execution)'",
        "series 'nv_inference_exec_counts' is exported by nothing known"),
    "rule-test-expectation": (
        _edit("baseline/monitoring/tests/onecommit.test.yaml", "              severity: critical\n",
              "              severity: page\n"),
        "baseline/monitoring/tests/onecommit.test.yaml", "promtool test rules",
        "alertname: OnecommitGatewayVariantErrorRateHigh"),
    "dockerfile-not-from-requirements": (
        _mlflow_by_name, "docker/mlflow.Dockerfile", "image mlflow",
        "does not install from requirements/mlflow.txt"),
    "dockerfile-package-by-name": (
        _mlflow_by_name, "docker/mlflow.Dockerfile", "image mlflow line",
        "installs 'mlflow==3.17.2' outside"),
    "dockerfile-venv-package-by-name": (
        _feast_by_name, "docker/feast.Dockerfile", "image feast line",
        "installs 'feast==0.50.0' outside"),
    "dockerfile-as-root": (
        _drop_user, "docker/gateway.Dockerfile", "image gateway", "final stage runs as root"),
    "compose-service-unchecked": (
        _edit("compose/compose.yaml", '''test: ["CMD", "onecommit-healthcheck",
             "http://127.0.0.1:${ONECOMMIT_ALERTMANAGER_PORT:?}/-/ready"]''',
              'test: ["NONE"]'),
        "compose/compose.yaml", "service alertmanager", "has no health check"),
    "policy-privilege-escalation": (
        _edit("charts/triton/templates/_helpers.tpl", "allowPrivilegeEscalation: false",
              "allowPrivilegeEscalation: true"),
        "charts/triton/templates/deployment.yaml", "chart triton (dev) Deployment/triton-dev",
        "checkov CKV_K8S_20"),
    "policy-skip-without-reason": (
        _edit("charts/feast/templates/pvc.yaml", "    helm.sh/resource-policy: keep\n",
              "    helm.sh/resource-policy: keep\n    checkov.io/skip1: CKV_K8S_21\n"),
        "charts/feast/templates/pvc.yaml", "chart feast (dev)", "checkov.io/skip1"),
    "optional-toggle-state": (
        _edit("gitops/envs/prod/optional.yaml", "state: detached", "state: enabled"),
        "gitops/envs/prod/optional.yaml", "optional layer toggle",
        "redis: state 'enabled' is not one of attached, detached"),
    "workflow-schema": (
        _edit(".github/workflows/lint.yml", "    runs-on: ubuntu-24.04",
              "    run-on: ubuntu-24.04"),
        ".github/workflows/lint.yml", "workflow at jobs.lint", "'runs-on' is a required property"),
}


# An Application's own mistakes (its destination, its source path) keep the lint from rendering
# the charts it deploys, which would hide the mistakes seeded in them: those two get a tree of
# their own.
APPLICATION_SEEDS = frozenset({"forbidden-namespace", "application-chart-path"})


def _seeded_tree(root: Path, seeds: list[str]) -> Path:
    _copy_tree(root)
    for mutate in {id(m): m for m, *_ in (SEEDS[s] for s in seeds)}.values():  # shared ones once
        mutate(root)
    _allow_listed(root)
    return root


@pytest.fixture(scope="module")
def lint_runs(lint_python: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> dict[str, subprocess.CompletedProcess[str]]:
    """The lint over the real tree and over the two seeded ones, run at the same time: each
    is a process of its own, mostly waiting on helm and checkov, and the two cores share them."""
    trees = {"real": PROJECT_ROOT,
             "seeded": _seeded_tree(tmp_path_factory.mktemp("seeded"),
                                    sorted(set(SEEDS) - APPLICATION_SEEDS)),
             "applications": _seeded_tree(tmp_path_factory.mktemp("applications"),
                                          sorted(APPLICATION_SEEDS))}
    with ThreadPoolExecutor(len(trees)) as pool:
        runs = {name: pool.submit(run_lint, lint_python, root) for name, root in trees.items()}
        return {name: run.result() for name, run in runs.items()}


def _findings(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def seeded_output(lint_runs: dict[str, subprocess.CompletedProcess[str]]) -> str:
    return _findings(lint_runs["seeded"])


@pytest.fixture(scope="module")
def application_seeded_output(lint_runs: dict[str, subprocess.CompletedProcess[str]]) -> str:
    return _findings(lint_runs["applications"])


@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_seeded_mistake_is_found(seed: str, request: pytest.FixtureRequest) -> None:
    _, file, obj, problem = SEEDS[seed]
    tree = "application_seeded_output" if seed in APPLICATION_SEEDS else "seeded_output"
    _assert_finding(request.getfixturevalue(tree), file, obj, problem)


def test_a_secret_made_outside_git_is_accepted_when_listed(seeded_output: str) -> None:
    # The same tree reports the dangling reference above: only the listed one is accepted.
    assert "'mlflow-db'" in seeded_output
    assert "triton-s3-external" not in seeded_output


def test_promtool_rule_tests_pass_on_the_tree(lint_python: Path) -> None:
    promtool = subprocess.run(
        [str(lint_python), "-c", "import sys; from pathlib import Path; "
         "from onecommit.lint.tools import ensure_promtool; "
         "print(ensure_promtool(Path(sys.argv[1])))", str(Settings().state_dir)],
        capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}).stdout.strip()
    tests = sorted((PROJECT_ROOT / "baseline").glob("*/tests/*.yaml"))
    assert tests
    result = subprocess.run([promtool, "test", "rules", *map(str, tests)], capture_output=True,
                            text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_tree_wide_skip_needs_a_reason(tmp_path: Path) -> None:
    skips = tmp_path / "skips.yaml"
    skips.write_text("CKV_K8S_43: pinned by tag, see the chart schemas\nCKV_K8S_15: ok\n")
    kept, problems = policy.tree_skips(tmp_path, skips)
    assert sorted(kept) == ["CKV_K8S_15", "CKV_K8S_43"]
    assert [(p.object, p.problem) for p in problems] == [
        ("CKV_K8S_15", "skip without a reason of at least 20 characters")]
