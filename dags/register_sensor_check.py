"""READY check on demand: is a registered version READY in the registry and in Triton?

Thin wrapper over `onecommit.lifecycle.flow.ready`, for operators asking after a deploy."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, PokeReturnValue, dag, get_current_context, task

from onecommit.lifecycle.dags import SENSOR_CHECK_DAG
from onecommit.settings import Settings

# Environment only (no I/O): the sensor's timing is platform configuration.
_SENSOR = Settings()


@dag(
    dag_id=SENSOR_CHECK_DAG,
    schedule=None,
    catchup=False,
    tags=["onecommit", "lifecycle", "check"],
    doc_md="Conf: `model`, `version`. Succeeds once the version is READY in the MLflow registry "
           "and loaded and READY in Triton; fails when the sensor times out.",
    params={"model": Param(type="string"), "version": Param(type="integer", minimum=1)},
    default_args={"retries": 0,
                  "execution_timeout": timedelta(seconds=_SENSOR.deploy_task_timeout_s)},
)
def register_sensor_check() -> None:
    @task.sensor(poke_interval=_SENSOR.ready_poke_s, timeout=_SENSOR.ready_timeout_s,
                 mode="poke")
    def ready() -> PokeReturnValue:
        from onecommit.lifecycle import flow

        params = get_current_context()["params"]
        seen = flow.ready(Settings(), params["model"], int(params["version"]))
        return PokeReturnValue(is_done=seen is not None, xcom_value=seen)

    ready()


register_sensor_check()
