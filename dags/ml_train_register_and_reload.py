"""One commit → a new model version trained, registered, published, smoke-tested and rolled out.

Thin TaskFlow wrapper: every step is a function in `onecommit.lifecycle.flow`.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, PokeReturnValue, TriggerRule, dag, get_current_context, task

DOC = """
Conf: `git_sha`, `env`, `spec` (the model spec as a mapping). Steps: train and evaluate against
the champion (quality gate) → register as `challenger` → publish to Triton beside the champion →
READY sensor → smoke test → gateway reload → canary steps with analysis → promote. Any failure
from publishing on triggers `rollback_to_before_version`.
"""


@dag(
    dag_id="ml_train_register_and_reload",
    schedule=None,
    catchup=False,
    tags=["onecommit", "lifecycle"],
    doc_md=DOC,
    params={"git_sha": Param("manual", type="string"), "env": Param("dev", type="string"),
            "spec": Param({}, type="object")},
    default_args={"retries": 0},
)
def ml_train_register_and_reload() -> None:
    @task(retries=1)
    def train_register() -> dict[str, Any]:
        from onecommit.lifecycle import flow, registry
        from onecommit.settings import Settings

        context = get_current_context()
        params = context["params"]
        run = registry.RunContext(git_sha=params["git_sha"], env=params["env"],
                                  dag_run_id=context["run_id"])
        registered = flow.train_and_register(Settings(), params["spec"], run)
        flow.send(Settings(), "deploy started", f"version {registered['version']} of "
                  f"{registered['model']} registered", {**registered, "git_sha": run.git_sha})
        return registered

    @task
    def publish(registered: dict[str, Any]) -> None:
        from onecommit.lifecycle import flow
        from onecommit.lifecycle.spec import parse_spec
        from onecommit.settings import Settings

        spec = parse_spec(get_current_context()["params"]["spec"])
        flow.publish(Settings(), spec, registered["version"])

    @task.sensor(poke_interval=2, timeout=300, mode="poke")
    def ready(registered: dict[str, Any]) -> PokeReturnValue:
        from onecommit.lifecycle import flow
        from onecommit.settings import Settings

        return PokeReturnValue(flow.ready(Settings(), registered["model"], registered["version"]))

    @task
    def smoke_and_reload(registered: dict[str, Any]) -> None:
        from onecommit.lifecycle import flow
        from onecommit.lifecycle.spec import parse_spec
        from onecommit.settings import Settings

        spec = parse_spec(get_current_context()["params"]["spec"])
        flow.smoke(Settings(), spec, registered["version"])
        flow.Gateway(Settings()).reload("challenger", registered["version"])

    @task
    def rollout(registered: dict[str, Any]) -> list[dict[str, Any]]:
        from onecommit.lifecycle import flow
        from onecommit.lifecycle.spec import Canary, parse_spec
        from onecommit.settings import Settings

        if registered["before_version"] is None:
            return []  # First model: nothing serves yet, nothing to compare with.
        spec = parse_spec(get_current_context()["params"]["spec"])
        steps = spec.rollout.steps if isinstance(spec.rollout, Canary) else [100]
        decisions = []
        for weight in steps:
            decision = flow.canary_step(Settings(), spec, weight)
            decisions.append(decision)
            flow.send(Settings(), "rollout step", f"{weight}% → {decision['decision']}",
                      decision)
            if decision["decision"] == "abort":
                raise flow.StepFailed(f"canary aborted at {weight}%: {decision['reason']}")
        return decisions

    @task
    def promote(registered: dict[str, Any]) -> None:
        from onecommit.lifecycle import flow
        from onecommit.settings import Settings

        settings = Settings()
        flow.promote(settings, registered["model"], registered["version"])
        sent = flow.send(settings, "promoted", f"version {registered['version']} is champion",
                         registered)
        flow.record_criteria(settings, registered["model"], registered["version"], {
            "registered": True, "ready": True, "smoke": True, "gateway_reload": True,
            "notification_sent": sent})

    registered = train_register()
    published = publish(registered)
    is_ready = ready(registered)
    reloaded = smoke_and_reload(registered)
    rolled_out = rollout(registered)
    promoted = promote(registered)
    rollback = TriggerDagRunOperator(
        task_id="trigger_rollback",
        trigger_dag_id="rollback_to_before_version",
        trigger_rule=TriggerRule.ONE_FAILED,
        conf={"model": "{{ ti.xcom_pull(task_ids='train_register')['model'] }}",
              "before_version": "{{ ti.xcom_pull(task_ids='train_register')['before_version'] }}",
              "failed_version": "{{ ti.xcom_pull(task_ids='train_register')['version'] }}",
              "reason": "deploy of run {{ run_id }} failed after publishing"},
    )
    @task(trigger_rule=TriggerRule.ONE_FAILED)
    def deploy_failed() -> None:
        # Without this leaf, a successful rollback trigger would mark the whole run a success.
        from onecommit.lifecycle.flow import StepFailed

        raise StepFailed("the deploy failed after publishing and was rolled back")

    published >> is_ready >> reloaded >> rolled_out >> promoted
    steps = [published, is_ready, reloaded, rolled_out, promoted]
    steps >> rollback
    steps >> deploy_failed()


ml_train_register_and_reload()
