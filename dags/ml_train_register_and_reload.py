"""One commit → a new model version trained, registered, published, smoke-tested and rolled out.

Thin TaskFlow wrapper: every step is a function of the lifecycle library (`flow`, `rollout`,
`notify`); each task imports only what it uses.
"""

from __future__ import annotations

from datetime import timedelta
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

from onecommit.lifecycle.dags import DEPLOY_DAG, ROLLBACK_DAG
from onecommit.settings import Settings

DOC = """
Conf: `git_sha`, `env`, `spec` (one model's spec as a mapping), `repo` (the gitops repository,
path or URL, that training reads the commit's data and code from) and `fingerprint` (the sync's
digest of the model's inputs). Steps: train (or fetch the version a promotion names, or reuse the
version built from the same inputs) and evaluate against the champion (quality gate) → register as
`challenger` → publish to Triton beside the champion → READY sensor → smoke test → gateway reload →
the spec's rollout strategy, judged step by step → promote → retire the versions no alias names.
Any failure from publishing to promote triggers `rollback_to_before_version`; any failure at all is
notified. Models deploy independently: runs of different models run at the same time; the sync
starts a model's next run only once its previous one ended, so a model's deploys keep their order.
"""
# Environment only (no I/O): the sensor's timing and the retry delay are platform configuration.
_PLATFORM = Settings()


def _run_context() -> Any:
    from onecommit.lifecycle import registry

    context = get_current_context()
    params = context["params"]
    return registry.RunContext(git_sha=params["git_sha"], env=params["env"],
                               dag_run_id=context["run_id"],
                               fingerprint=params.get("fingerprint") or "")


def _spec() -> Any:
    from onecommit.lifecycle.spec import parse_spec

    return parse_spec(get_current_context()["params"]["spec"])


@dag(
    dag_id=DEPLOY_DAG,
    schedule=None,
    catchup=False,
    # One run per model at a time is the sync's rule (it waits for a model's run to end before
    # the next); this only bounds how many models deploy at once.
    max_active_runs=_PLATFORM.deploy_max_active_runs,
    tags=["onecommit", "lifecycle"],
    doc_md=DOC,
    params={"git_sha": Param("manual", type="string"), "env": Param("dev", type="string"),
            "spec": Param({}, type="object"), "repo": Param("", type="string"),
            "fingerprint": Param("", type="string")},
    # A retried step (a platform fault) runs again after `deploy_retry_delay_s` (15 s), not
    # Airflow's default 5 min.
    # Every task ends within `deploy_task_timeout_s`: no spec stalls its model forever.
    default_args={"retries": 0,
                  "retry_delay": timedelta(seconds=_PLATFORM.deploy_retry_delay_s),
                  "execution_timeout": timedelta(seconds=_PLATFORM.deploy_task_timeout_s)},
    # Templates render to Python values: the rollback's conf carries the versions as integers
    # and a missing before_version as null, not as the strings "3" and "None".
    render_template_as_native_obj=True,
)
def ml_train_register_and_reload() -> None:
    @task(retries=1)
    def train() -> dict[str, Any]:
        """Retried on a fault of the platform; a refusal of the commit (its data, its code,
        the quality gate) is final: its reason goes on the sync record and in a notification."""
        from airflow.sdk.exceptions import AirflowFailException

        from onecommit.lifecycle import flow
        from onecommit.sync import record_failure

        settings, params = Settings(), get_current_context()["params"]
        try:
            return flow.train(settings, params, _run_context())
        except flow.REFUSALS as refused:
            record_failure(settings, params["git_sha"], params["env"],
                           str(params["spec"].get("model")), str(refused))
            flow.refused(settings, params, str(refused))
            raise AirflowFailException(str(refused)) from None

    @task(retries=1)
    def register(trained: dict[str, Any]) -> dict[str, Any]:
        """Returns the registered version: the evidence of criterion `registered`."""
        from onecommit.lifecycle import flow
        from onecommit.lifecycle.notify import send

        settings, run = Settings(), _run_context()
        registered = flow.register(settings, trained, run)
        send(settings, "deploy started", f"version {registered['version']} of "
             f"{registered['model']} registered", {**registered, "git_sha": run.git_sha},
             model=registered["model"], version=registered["version"])
        return registered

    @task
    def publish(registered: dict[str, Any]) -> None:
        from onecommit.lifecycle import flow

        flow.publish(Settings(), _spec(), registered["version"])

    @task.sensor(poke_interval=_PLATFORM.ready_poke_s, timeout=_PLATFORM.ready_timeout_s,
                 mode="poke")
    def ready(registered: dict[str, Any]) -> PokeReturnValue:
        """Its value is what it saw when READY held: the evidence of criterion `ready`."""
        from onecommit.lifecycle import flow

        seen = flow.ready(Settings(), registered["model"], registered["version"])
        return PokeReturnValue(is_done=seen is not None, xcom_value=seen)

    @task
    def smoke(registered: dict[str, Any]) -> dict[str, Any]:
        from onecommit.lifecycle import flow

        return flow.smoke(Settings(), _spec(), registered["version"])

    @task
    def reload(registered: dict[str, Any]) -> dict[str, Any]:
        from onecommit.lifecycle import flow

        return flow.reload_challenger(Settings(), registered["model"], registered["version"])

    @task(retries=2)
    def rollout(registered: dict[str, Any]) -> list[dict[str, Any]]:
        """Retried when its process dies (a scheduler killed or restarted under it): the
        strategy starts again from its first step. A verdict is final: never retried."""
        from airflow.sdk.exceptions import AirflowFailException

        from onecommit.lifecycle import rollout as strategy
        from onecommit.lifecycle.notify import send

        if registered["before_version"] in (None, registered["version"]):
            return []  # Nothing serves yet, or it serves already: nothing to compare with.
        settings = Settings()
        try:
            return strategy.run(settings, _spec(), registered["version"], on_step=lambda step: (
                send(settings, "rollout step", f"{step['step']} → {step['decision']}", step,
                     model=registered["model"], version=registered["version"])))
        except strategy.RolloutAborted as aborted:
            raise AirflowFailException(str(aborted)) from None

    @task
    def promote(registered: dict[str, Any], ready_seen: dict[str, Any],
                smoke_seen: dict[str, Any], reload_seen: dict[str, Any]) -> dict[str, bool]:
        """Returns the five deployment criteria, judged from the evidence of the steps: they
        are recorded on the run (XCom) and on the model version (tags)."""
        from onecommit.lifecycle import flow
        from onecommit.lifecycle import rollout as strategy
        from onecommit.lifecycle.notify import send

        settings = Settings()
        strategy.promote(settings, registered["model"], registered["version"])
        delivery = send(settings, "promoted", f"version {registered['version']} is champion",
                        registered, model=registered["model"], version=registered["version"])
        return flow.record_criteria(settings, registered["model"], registered["version"], {
            "registered": registered, "ready": ready_seen, "smoke": smoke_seen,
            "gateway_reload": reload_seen, "notification_sent": delivery})

    @task
    def retire(registered: dict[str, Any]) -> list[int]:
        """After the promotion: unload the versions no alias names (the old champion stays,
        as `previous`). Returns them."""
        from onecommit.lifecycle import rollout as strategy

        return strategy.retire(Settings(), registered["model"])

    @task(trigger_rule=TriggerRule.ONE_FAILED)
    def notify_failure() -> None:
        # Also keeps the run failed: without this leaf a successful rollback trigger would
        # mark the whole run a success.
        from onecommit.lifecycle.flow import StepFailed
        from onecommit.lifecycle.notify import send

        context = get_current_context()
        send(Settings(), "DAG failure", f"deploy run {context['run_id']} failed",
             {"dag": context["dag"].dag_id, "run": context["run_id"],
              "git_sha": context["params"]["git_sha"]},
             model=context["params"]["spec"].get("model"))
        raise StepFailed("the deploy failed; see the failed task's log")

    trained = train()
    registered = register(trained)
    published, ready_seen = publish(registered), ready(registered)
    smoke_seen, reload_seen = smoke(registered), reload(registered)
    rolled_out = rollout(registered)
    promoted = promote(registered, ready_seen, smoke_seen, reload_seen)
    steps = [published, ready_seen, smoke_seen, reload_seen, rolled_out, promoted]
    chain(*steps)
    pulled = "ti.xcom_pull(task_ids='register')"
    rollback = TriggerDagRunOperator(
        task_id="trigger_rollback",
        trigger_dag_id=ROLLBACK_DAG,
        trigger_rule=TriggerRule.ONE_FAILED,
        conf={"model": f"{{{{ {pulled}['model'] }}}}",
              "before_version": f"{{{{ {pulled}['before_version'] }}}}",
              "failed_version": f"{{{{ {pulled}['version'] }}}}",
              "reason": "deploy of run {{ run_id }} failed after publishing"},
    )
    steps >> rollback
    retired = retire(registered)
    promoted >> retired
    [trained, registered, *steps, retired] >> notify_failure()


ml_train_register_and_reload()
