"""Restore the version that served before a failed deploy. Thin wrapper over
`onecommit.lifecycle.rollout.rollback`."""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task

from onecommit.lifecycle.dags import ROLLBACK_DAG


@dag(
    dag_id=ROLLBACK_DAG,
    schedule=None,
    catchup=False,
    tags=["onecommit", "lifecycle", "rollback"],
    doc_md="Champion alias back to `before_version`, gateway reload, 100% traffic to champion, "
           "the failed version tagged with the reason, notification.",
    params={"model": Param(type="string"), "before_version": Param(type=["string", "null"]),
            "failed_version": Param(type="string"), "reason": Param(type="string")},
    default_args={"retries": 2},
)
def rollback_to_before_version() -> None:
    @task
    def restore() -> None:
        from onecommit.lifecycle import rollout as strategy
        from onecommit.lifecycle.notify import send
        from onecommit.settings import Settings

        params = get_current_context()["params"]
        before = params["before_version"]
        before_version = int(before) if before not in (None, "", "None") else None
        settings = Settings()
        reason = strategy.rollback(settings, params["model"], before_version,
                                   int(params["failed_version"]), params["reason"])
        send(settings, "rolled back", f"{params['model']} back to version {before_version}: "
             f"{reason}", {**params, "reason": reason})

    restore()


rollback_to_before_version()
