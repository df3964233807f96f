"""The trainer on clusters stays locked down, in every render of the Airflow chart: its pods (the
Deployment's template) mount no service-account token, take no credential or setting, run as a
non-root user with a read-only root filesystem and no capability, and a deny-all NetworkPolicy
(both directions, no rule) selects them. Every commit's training runs there."""

from __future__ import annotations

from typing import Any

from onecommit.lint import Finding
from onecommit.lint.helm import Rendered

TRAINER_LABEL = ("app.kubernetes.io/component", "trainer")
# What a trainer container may be told: where the library is, and a home.
_ALLOWED_ENV = {"HOME", "PYTHONPATH"}


def _is_trainer(doc: dict[str, Any]) -> bool:
    labels = doc.get("metadata", {}).get("labels") or {}
    return doc.get("kind") == "Deployment" and labels.get(TRAINER_LABEL[0]) == TRAINER_LABEL[1]


def _pod_problems(pod: dict[str, Any]) -> list[str]:
    problems = []
    if pod.get("automountServiceAccountToken") is not False:
        problems.append("mounts a service-account token: automountServiceAccountToken: false")
    for container in pod.get("containers", []):
        context = container.get("securityContext") or {}
        name = container.get("name")
        if context.get("readOnlyRootFilesystem") is not True:
            problems.append(f"container {name}: readOnlyRootFilesystem: true")
        if context.get("runAsNonRoot") is not True or context.get("allowPrivilegeEscalation"):
            problems.append(f"container {name}: runAsNonRoot: true, no privilege escalation")
        if (context.get("capabilities") or {}).get("drop") != ["ALL"]:
            problems.append(f"container {name}: capabilities.drop: [ALL]")
        extra = {env.get("name") for env in container.get("env", [])} - _ALLOWED_ENV
        if extra or container.get("envFrom"):
            problems.append(f"container {name}: takes settings or credentials "
                            f"({', '.join(sorted(map(str, extra))) or 'envFrom'}): "
                            "give it HOME and PYTHONPATH only")
    return problems


def _denies_all(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    spec = policy.get("spec") or {}
    selected = (spec.get("podSelector") or {}).get("matchLabels") or {}
    return (policy.get("kind") == "NetworkPolicy" and selected.items() <= labels.items()
            and {"Ingress", "Egress"} <= set(spec.get("policyTypes") or [])
            and not spec.get("ingress") and not spec.get("egress"))


def check_trainer(rendered: list[Rendered]) -> list[Finding]:
    findings = []
    for render in rendered:
        if render.render.chart != "airflow":
            continue
        docs = [doc for _, doc in render.objects]
        trainers = [(where, doc) for where, doc in render.objects if _is_trainer(doc)]
        if not trainers:
            findings.append(Finding(f"charts/airflow ({render.label})", "trainer",
                                    "no trainer Deployment: every commit's training needs its "
                                    "locked-down pod (trainer.enabled: true)"))
        for where, trainer in trainers:
            template = trainer["spec"]["template"]
            labels = template.get("metadata", {}).get("labels") or {}
            problems = _pod_problems(template.get("spec") or {})
            if not any(_denies_all(doc, labels) for doc in docs):
                problems.append("no deny-all NetworkPolicy selects its pods: add one with "
                                "policyTypes [Ingress, Egress] and no rules")
            name = f"Deployment/{trainer['metadata']['name']}"
            findings += [Finding(where, name, problem) for problem in problems]
    return findings
