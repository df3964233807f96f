"""The platform's Airflow REST client (Airflow 3 public API, JWT from the SimpleAuthManager)."""

from __future__ import annotations

from typing import Any

import httpx


class AirflowClient:
    """Talks to Airflow's `/api/v2`; fetches a token with the platform's generated credential."""

    def __init__(self, base_url: str, username: str, password: str, timeout_s: float = 10) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s)
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
