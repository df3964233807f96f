"""The platform's Airflow REST client (Airflow 3 public API, JWT from the SimpleAuthManager)."""

from __future__ import annotations

import time
from typing import Any

import httpx

from onecommit.errors import OnecommitError
from onecommit.secrets.catalog import AIRFLOW_USER
from onecommit.secrets.local_store import airflow_password
from onecommit.settings import Settings, tls_context

# How often a waiting caller asks for a run's state: a cheap GET, and every second a deploy's
# follower waits past its end is a second of every demo commit and test.
RUN_POLL_S = 0.5


class AirflowError(OnecommitError):
    """Airflow refused a call (`status` is its HTTP status) or a run did not finish in time
    (`status` None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AirflowClient:
    """Talks to Airflow's `/api/v2`; fetches a token with the platform's generated credential."""

    def __init__(self, base_url: str, username: str, password: str, timeout_s: float = 30) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s, verify=tls_context())
        self._username = username
        self._password = password
        self._token: str | None = None

    def close(self) -> None:
        self._http.close()

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            response = self._http.post(
                "/auth/token", json={"username": self._username, "password": self._password}
            )
            response.raise_for_status()
            self._token = str(response.json()["access_token"])
        return {"Authorization": f"Bearer {self._token}"}

    def get(self, path: str) -> Any:
        response = self._http.get(f"/api/v2{path}", headers=self._headers())
        response.raise_for_status()
        return response.json()

    def version(self) -> str:
        return str(self.get("/version")["version"])

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = self._http.post(f"/api/v2{path}", json=body, headers=self._headers())
        if response.status_code >= 400:
            raise AirflowError(f"POST {path} answered {response.status_code}: {response.text}",
                               response.status_code)
        return response.json()

    def wait_for_dag(self, dag_id: str, timeout_s: float = 120) -> None:
        """Wait until the DAG processor has parsed the DAG (a fresh platform has not yet)."""
        deadline = time.monotonic() + timeout_s
        while True:
            response = self._http.get(f"/api/v2/dags/{dag_id}", headers=self._headers())
            if response.status_code == 200:
                return
            if time.monotonic() > deadline:
                raise AirflowError(f"DAG {dag_id} not parsed after {timeout_s:.0f} s: "
                                   "see `invoke logs airflow` for import errors")
            time.sleep(1)

    def trigger(self, dag_id: str, conf: dict[str, Any], run_id: str | None = None,
                attempts: int = 5) -> str:
        """Trigger a run. A 5xx (the local metadata database is SQLite, and busy at times) is
        tried again with a backoff; with a run id that is safe, since a run created by an
        attempt that still failed answers 409 to the next."""
        body: dict[str, Any] = {"conf": conf, "logical_date": None}
        if run_id:
            body["dag_run_id"] = run_id
        for attempt in range(attempts):
            response = self._http.post(f"/api/v2/dags/{dag_id}/dagRuns", json=body,
                                       headers=self._headers())
            if response.status_code < 500 or attempt + 1 == attempts:
                break
            time.sleep(2**attempt)
        if response.status_code >= 400:
            raise AirflowError(f"POST /dags/{dag_id}/dagRuns answered {response.status_code}: "
                               f"{response.text}", response.status_code)
        return str(response.json()["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.get(f"/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        body = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        instances: list[dict[str, Any]] = body["task_instances"]
        return instances

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        return {t["task_id"]: str(t["state"]) for t in self.task_instances(dag_id, run_id)}

    def runs(self, dag_id: str, limit: int = 20) -> list[dict[str, Any]]:
        """The DAG's latest runs, newest first."""
        body = self.get(f"/dags/{dag_id}/dagRuns?order_by=-run_after&limit={limit}")
        runs: list[dict[str, Any]] = body["dag_runs"]
        return runs

    def wait_for_run(self, dag_id: str, run_id: str, timeout_s: float = 900) -> str:
        """The run's final state. A poll that times out is retried: a busy API server must not
        end the wait before the run does."""
        deadline = time.monotonic() + timeout_s
        state = "unknown"
        while time.monotonic() < deadline:
            try:
                state = self.run_state(dag_id, run_id)
            except httpx.TransportError:
                state = "unknown (API server not answering)"
            if state in ("success", "failed"):
                return state
            time.sleep(RUN_POLL_S)
        raise AirflowError(f"{dag_id} run {run_id} still {state} after {timeout_s:.0f} s")


def platform_client(settings: Settings) -> AirflowClient:
    """A client for the platform's Airflow: on clusters the configured URL and credential (the
    PostSync Job gets them from a SealedSecret), locally the generated credential."""
    if settings.airflow_api_url and settings.airflow_password:
        return AirflowClient(settings.airflow_api_url, settings.airflow_username,
                             settings.airflow_password.get_secret_value())
    return AirflowClient(settings.url(settings.airflow_port), AIRFLOW_USER,
                         airflow_password(settings.state_dir))
