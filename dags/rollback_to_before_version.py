"""Restore the version that served before a failed deploy. Thin wrapper over
`onecommit.lifecycle.rollout.rollback`."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, get_current_context, task

from onecommit.lifecycle.dags import ROLLBACK_DAG
from onecommit.settings import Settings
from onecommit.vocabulary import MODEL_NAME

# Environment only (no I/O): every task's time limit is platform configuration.
_PLATFORM = Settings()


@dag(
    dag_id=ROLLBACK_DAG,
    schedule=None,
    catchup=False,
    tags=["onecommit", "lifecycle", "rollback"],
    doc_md="Champion alias back to `before_version`, gateway reload, 100% traffic to champion, "
           "the failed version tagged with the reason, notification. A version whose rollout is "
           "held (inconclusive, its spec says hold) is left serving, and the notification "
           "says so.",
    params={"model": Param(type="string", pattern=MODEL_NAME),
            # Null when the failed version was the model's first: no champion to restore.
            "before_version": Param(None, type=["integer", "null"], minimum=1),
            "failed_version": Param(type="integer", minimum=1),
            "reason": Param(type="string")},
    default_args={"retries": 2,
                  "execution_timeout": timedelta(seconds=_PLATFORM.deploy_task_timeout_s)},
)
def rollback_to_before_version() -> None:
    @task
    def restore() -> None:
        from onecommit.lifecycle import rollout as strategy
        from onecommit.lifecycle.notify import send
        from onecommit.settings import Settings

        params = get_current_context()["params"]
        model, before_version = params["model"], params["before_version"]
        settings = Settings()
        why_held = strategy.held(settings, model, params["failed_version"])
        if why_held is not None:
            send(settings, "rollout held", f"{model} version {params['failed_version']} left "
                 f"serving for a person to decide: {why_held}", {**params, "reason": why_held},
                 model=model, version=params["failed_version"])
            return
        reason = strategy.rollback(settings, model, before_version, params["failed_version"],
                                   params["reason"])
        send(settings, "rolled back", f"{model} back to version {before_version}: {reason}",
             {**params, "reason": reason}, model=model, version=params["failed_version"])

    restore()


rollback_to_before_version()
