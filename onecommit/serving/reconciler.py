"""The Triton reconciler: keeps every version desired state pins loaded in the inference
server, again after a Triton crash or restart, with no deploy.

    python -m onecommit.serving.reconciler           # run
    python -m onecommit.serving.reconciler --check   # liveness: a pass finished lately

Each pass reads desired state (`state.py`) and Triton's repository index (one gRPC call), and
asks Triton to load a model whose needed versions are not all READY. A load keeps the versions
already served up while the others load (Triton replaces a loaded model without losing its
availability), so the reconciler never unloads anything: retiring versions is the lifecycle's
job. Locally it runs under the platform's supervisor beside Triton; on clusters it is a sidecar
of each Triton pod, on localhost, reading the shared serving database.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from onecommit.serving.database import open_engine
from onecommit.serving.state import StateStore
from onecommit.settings import Settings
from onecommit.vocabulary import TRITON_CONTROL_METADATA


def say(event: str, **fields: Any) -> None:
    """One JSON line per event on standard output (the reconciler's log)."""
    record = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event,
              **fields}
    print(json.dumps(record, default=str), flush=True)


@dataclass
class _Backoff:
    """Per model: when the next load may be tried after a failed one."""

    failures: int = 0
    not_before: float = 0.0

    def failed(self, now: float) -> None:
        self.failures += 1
        self.not_before = now + min(30.0, 0.5 * 2**self.failures)


@dataclass
class Reconciler:
    store: StateStore
    grpc_target: str
    # The local model repository, to name versions that are missing from it; None when the
    # repository is remote (S3 on clusters).
    repository: Path | None
    # The header Triton's model control asks for (empty: Triton's control is open).
    control: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 60.0
    _backoff: dict[str, _Backoff] = field(default_factory=dict)
    _triton_up: bool | None = None
    _unready_since: dict[tuple[str, int], float] = field(default_factory=dict)

    def reconcile(self, client: Any) -> list[str]:
        """One pass; returns the models it asked Triton to load."""
        desired = self.store.read_all()
        try:
            index = client.get_model_repository_index(headers=self.control, client_timeout=5)
        except InferenceServerException as error:
            self._note_triton(False, str(error))
            return []
        self._note_triton(True)
        ready = {(m.name, int(m.version)) for m in index.models
                 if m.state == "READY" and m.version.isdigit()}
        loaded = []
        now = time.monotonic()
        for model, state in desired.items():
            missing = sorted(v for v in state.needed_versions() if (model, v) not in ready)
            self._track(model, state.needed_versions(), missing, now)
            if missing and self._load(client, model, missing, now):
                loaded.append(model)
        return loaded

    def _load(self, client: Any, model: str, missing: list[int], now: float) -> bool:
        backoff = self._backoff.setdefault(model, _Backoff())
        if now < backoff.not_before:
            return False
        absent = self._absent(model, missing)
        if absent:
            say("versions missing from the model repository", model=model, versions=absent,
                repository=str(self.repository),
                fix="re-run the deploy that published them, or pin another version")
            if absent == missing:
                backoff.failed(now)
                return False
        say("loading", model=model, versions=missing)
        try:
            client.load_model(model, headers=self.control, client_timeout=self.timeout_s)
        except InferenceServerException as error:
            backoff.failed(now)
            say("load failed", model=model, versions=missing, reason=str(error),
                retry_in_s=round(backoff.not_before - now, 1))
            return False
        self._backoff.pop(model, None)
        return True

    def _absent(self, model: str, versions: list[int]) -> list[int]:
        if self.repository is None:
            return []
        return [v for v in versions if not (self.repository / model / str(v)).is_dir()]

    def _track(self, model: str, needed: set[int], missing: list[int], now: float) -> None:
        """Log how long each needed version was not READY, when it is READY again."""
        for version in needed:
            key = (model, version)
            if version in missing:
                self._unready_since.setdefault(key, now)
            elif key in self._unready_since:
                say("ready", model=model, version=version,
                    after_s=round(now - self._unready_since.pop(key), 2))

    def _note_triton(self, up: bool, reason: str = "") -> None:
        if up != self._triton_up:
            say("triton answering" if up else "triton not answering", target=self.grpc_target,
                **({"reason": reason} if reason else {}))
            self._triton_up = up


def heartbeat_file(settings: Settings) -> Path:
    """Touched after every pass: its age is the reconciler's liveness (`--check`)."""
    return settings.state_dir / "serving" / "reconciler.alive"


def check(settings: Settings) -> int:
    """Exit 0 when a pass finished lately (a liveness probe), else 1 with the reason."""
    limit = max(15.0, 10 * settings.reconcile_interval_s)
    try:
        age = time.time() - heartbeat_file(settings).stat().st_mtime
    except OSError:
        print(f"no pass recorded at {heartbeat_file(settings)}")
        return 1
    if age > limit:
        print(f"last pass {age:.0f} s ago (limit {limit:.0f} s)")
        return 1
    return 0


def main() -> int:
    settings = Settings()
    if sys.argv[1:] == ["--check"]:
        return check(settings)
    # Triton on this host: the platform's locally, the pod's own (a sidecar) on clusters.
    target = f"{settings.host}:{settings.triton_grpc_port}"
    repository = settings.model_repository if settings.model_repository.is_dir() else None
    key = settings.triton_control_key
    reconciler = Reconciler(StateStore(open_engine(settings.serving_db)), target, repository,
                            {} if key is None else
                            {TRITON_CONTROL_METADATA: key.get_secret_value()})
    stopping = False

    def stop(_signal: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    beat = heartbeat_file(settings)
    beat.parent.mkdir(parents=True, exist_ok=True)
    say("started", target=target, interval_s=settings.reconcile_interval_s)
    client = triton_grpc.InferenceServerClient(target)
    try:
        while not stopping:
            try:
                reconciler.reconcile(client)
                beat.touch()
            except Exception as error:  # The database or Triton failing: try again next pass.
                say("pass failed", reason=f"{type(error).__name__}: {error}")
            time.sleep(settings.reconcile_interval_s)
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
