"""The lifecycle's steps chained as the DAG chains them, against the real platform."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import tritonclient.grpc as triton_grpc

from onecommit.lifecycle import data, flow, registry, rollout
from onecommit.lifecycle.spec import SpecError, parse_spec
from onecommit.settings import PROJECT_ROOT, Settings
from onecommit.vocabulary import CHAMPION
from tests.conftest import triton_control

pytestmark = pytest.mark.platform
MODEL = "breast-cancer"


def _spec(c_value: float) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load((PROJECT_ROOT / f"gitops/envs/dev/models/{MODEL}.yaml").read_text())
    data["training"]["params"]["C"] = c_value
    data["rollout"] = {"kind": "canary", "steps": [50, 100], "pause_s": 2}
    data["analysis"]["min_requests"] = 10
    return data


def _champion(settings: Settings) -> int:
    """The champion serving now; on a registry without one (this module run alone), a first
    version deployed as the DAG deploys it: promoted directly, nothing to compare with. Two
    commits promoted in turn under a canary are the loop's tests (test_loop.py)."""
    client = registry.client(settings.url(settings.mlflow_port))
    champion = registry.alias_version(client, MODEL, CHAMPION)
    if champion is not None:
        return champion
    spec_data = _spec(1.0)
    context = registry.RunContext(git_sha="first", env="dev", dag_run_id="flow-first")
    trained = flow.train(settings, {"spec": spec_data}, context)
    registered = flow.register(settings, trained, context)
    flow.publish(settings, parse_spec(spec_data), registered["version"])
    rollout.promote(settings, MODEL, registered["version"])
    return int(registered["version"])


def test_failed_smoke_rolls_back_and_champion_keeps_serving(platform: Settings) -> None:
    champion = _champion(platform)
    client = registry.client(platform.url(platform.mlflow_port))
    spec_data = _spec(0.7)
    spec = parse_spec(spec_data)
    context = registry.RunContext(git_sha="bad", env="dev", dag_run_id="flow-bad")
    trained = flow.train(platform, {"spec": spec_data}, context)
    registered = flow.register(platform, trained, context)
    flow.publish(platform, spec, registered["version"])
    onnx_file = platform.model_repository / MODEL / str(registered["version"]) / "model.onnx"
    # Tamper with the published model: Triton must now disagree with the registry.
    other = next(p for p in (platform.model_repository / MODEL).glob("*/model.onnx")
                 if p != onnx_file)
    onnx_file.write_bytes(other.read_bytes())
    grpc = triton_grpc.InferenceServerClient(f"127.0.0.1:{platform.triton_grpc_port}")
    grpc.load_model(MODEL, headers=triton_control(platform))
    with pytest.raises(flow.StepFailed, match="smoke test"):
        flow.smoke(platform, spec, registered["version"])
    rollout.rollback(platform, MODEL, registered["before_version"], registered["version"],
                  "smoke test failed")
    assert registry.alias_version(client, MODEL, CHAMPION) == champion
    tags = client.get_model_version(MODEL, str(registered["version"])).tags
    assert tags["status"] == "rolled_back"
    assert tags["reason"].startswith("smoke test: ")
    # Traffic has left the failed version: Triton no longer serves it.
    assert not flow.ready(platform, MODEL, registered["version"])
    url = platform.url(platform.gateway_port)
    assert httpx.get(f"{url}/models/{MODEL}/traffic").json()["weights"]["champion"] == 1.0
    row = data.of_spec(spec).x_holdout[:1]
    response = httpx.post(f"{url}/v2/models/{MODEL}/infer", json={"inputs": [
        {"name": "X", "shape": [1, 30], "datatype": "FP32", "data": row.flatten().tolist()}]})
    assert response.status_code == 200
    assert response.headers["x-onecommit-version"] == str(champion)


def test_spec_error_is_refused_before_anything_runs(platform: Settings) -> None:
    client = registry.client(platform.url(platform.mlflow_port))
    versions = len(client.search_model_versions(f"name='{MODEL}'"))
    bad = {**_spec(1.0), "training": {"trainer": "svm"}}
    context = registry.RunContext(git_sha="invalid", env="dev", dag_run_id="flow-invalid")
    with pytest.raises(SpecError, match=r"training\.trainer"):
        flow.train(platform, {"spec": bad}, context)
    assert len(client.search_model_versions(f"name='{MODEL}'")) == versions


def test_rerun_of_the_same_dag_run_trains_and_registers_once(platform: Settings) -> None:
    client = registry.client(platform.url(platform.mlflow_port))
    context = registry.RunContext(git_sha="rerun", env="dev", dag_run_id="flow-rerun")
    first = flow.register(platform, flow.train(platform, {"spec": _spec(2.0)}, context), context)
    versions = len(client.search_model_versions(f"name='{MODEL}'"))
    runs = len(client.search_runs([client.get_experiment_by_name(MODEL).experiment_id]))
    again = flow.register(platform, flow.train(platform, {"spec": _spec(2.0)}, context), context)
    assert again == first
    assert len(client.search_model_versions(f"name='{MODEL}'")) == versions
    assert len(client.search_runs([client.get_experiment_by_name(MODEL).experiment_id])) == runs


def test_a_challenger_whose_inputs_differ_from_the_champions_is_refused(
        platform: Settings) -> None:
    """Clients send the champion's inputs: a candidate of other features would answer them
    wrongly, so training refuses it before anything is registered."""
    champion = _champion(platform)
    client = registry.client(platform.url(platform.mlflow_port))
    versions = len(client.search_model_versions(f"name='{MODEL}'"))
    fewer = _spec(1.0)
    fewer["data"]["features"] = ["mean_radius", "mean_texture", "mean_area"]
    context = registry.RunContext(git_sha="inputs", env="dev", dag_run_id="flow-inputs")
    with pytest.raises(flow.StepFailed, match=rf"inputs differ from the champion's \(version "
                                              rf"{champion}\).*deploy it as a new model"):
        flow.train(platform, {"spec": fewer}, context)
    assert len(client.search_model_versions(f"name='{MODEL}'")) == versions
