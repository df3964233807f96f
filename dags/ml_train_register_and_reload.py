"""One commit → a new model version trained, registered, published, smoke-tested and rolled out.

Thin TaskFlow wrapper: every step is a function in `onecommit.lifecycle.flow`.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import (
    Param,
    PokeReturnValue,
    TriggerRule,
    chain,
    dag,
    get_current_context,
    task,
)

from onecommit.settings import Settings

DOC = """
Conf: `git_sha`, `env`, `spec` (the model spec as a mapping). Steps: train and evaluate against
the champion (quality gate) → register as `challenger` → publish to Triton beside the champion →
READY sensor → smoke test → gateway reload → the spec's rollout strategy, judged step by step →
promote. Any failure from publishing on triggers `rollback_to_before_version`; any failure at all
is notified. Runs are processed one at a time, in the order they were triggered.
"""
# Environment only (no I/O): the sensor's timing is platform configuration.
_SENSOR = Settings()


def _run_context() -> Any:
    from onecommit.lifecycle import registry

    context = get_current_context()
    params = context["params"]
    return registry.RunContext(git_sha=params["git_sha"], env=params["env"],
                               dag_run_id=context["run_id"])


def _spec() -> Any:
    from onecommit.lifecycle.spec import parse_spec

    return parse_spec(get_current_context()["params"]["spec"])


@dag(
    dag_id="ml_train_register_and_reload",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    tags=["onecommit", "lifecycle"],
    doc_md=DOC,
    params={"git_sha": Param("manual", type="string"), "env": Param("dev", type="string"),
            "spec": Param({}, type="object")},
    default_args={"retries": 0},
)
def ml_train_register_and_reload() -> None:
    @task(retries=1)
    def train() -> dict[str, Any]:
        from onecommit.lifecycle import flow

        return flow.train(Settings(), get_current_context()["params"]["spec"], _run_context())

    @task(retries=1)
    def register(trained: dict[str, Any]) -> dict[str, Any]:
        from onecommit.lifecycle import flow

        settings, run = Settings(), _run_context()
        registered = flow.register(settings, trained, run)
        flow.send(settings, "deploy started", f"version {registered['version']} of "
                  f"{registered['model']} registered", {**registered, "git_sha": run.git_sha})
        return registered

    @task
    def publish(registered: dict[str, Any]) -> None:
        from onecommit.lifecycle import flow

        flow.publish(Settings(), _spec(), registered["version"])

    @task.sensor(poke_interval=_SENSOR.ready_poke_s, timeout=_SENSOR.ready_timeout_s,
                 mode="poke")
    def ready(registered: dict[str, Any]) -> PokeReturnValue:
        from onecommit.lifecycle import flow

        return PokeReturnValue(flow.ready(Settings(), registered["model"], registered["version"]))

    @task
    def smoke(registered: dict[str, Any]) -> None:
        from onecommit.lifecycle import flow

        flow.smoke(Settings(), _spec(), registered["version"])

    @task
    def reload(registered: dict[str, Any]) -> None:
        from onecommit.lifecycle import flow

        flow.reload_challenger(Settings(), registered["version"])

    @task
    def rollout(registered: dict[str, Any]) -> list[dict[str, Any]]:
        from onecommit.lifecycle import flow

        if registered["before_version"] is None:
            return []  # First model: nothing serves yet, nothing to compare with.
        settings = Settings()
        return flow.rollout(settings, _spec(), registered["version"], on_step=lambda step: (
            flow.send(settings, "rollout step", f"{step['step']} → {step['decision']}", step)))

    @task
    def promote(registered: dict[str, Any]) -> dict[str, bool]:
        """Returns the five deployment criteria: they are recorded on the run (XCom) and on
        the model version (tags)."""
        from onecommit.lifecycle import flow

        settings = Settings()
        flow.promote(settings, registered["model"], registered["version"])
        sent = flow.send(settings, "promoted", f"version {registered['version']} is champion",
                         registered)
        criteria = {"registered": True, "ready": True, "smoke": True, "gateway_reload": True,
                    "notification_sent": sent}
        flow.record_criteria(settings, registered["model"], registered["version"], criteria)
        return criteria

    @task(trigger_rule=TriggerRule.ONE_FAILED)
    def notify_failure() -> None:
        # Also keeps the run failed: without this leaf a successful rollback trigger would
        # mark the whole run a success.
        from onecommit.lifecycle import flow

        context = get_current_context()
        flow.send(Settings(), "DAG failure", f"deploy run {context['run_id']} failed",
                  {"dag": context["dag"].dag_id, "run": context["run_id"],
                   "git_sha": context["params"]["git_sha"]})
        raise flow.StepFailed("the deploy failed; see the failed task's log")

    trained = train()
    registered = register(trained)
    steps = [publish(registered), ready(registered), smoke(registered), reload(registered),
             rollout(registered), promote(registered)]
    chain(*steps)
    pulled = "ti.xcom_pull(task_ids='register')"
    rollback = TriggerDagRunOperator(
        task_id="trigger_rollback",
        trigger_dag_id="rollback_to_before_version",
        trigger_rule=TriggerRule.ONE_FAILED,
        conf={"model": f"{{{{ {pulled}['model'] }}}}",
              "before_version": f"{{{{ {pulled}['before_version'] }}}}",
              "failed_version": f"{{{{ {pulled}['version'] }}}}",
              "reason": "deploy of run {{ run_id }} failed after publishing"},
    )
    steps >> rollback
    [trained, registered, *steps] >> notify_failure()


ml_train_register_and_reload()
