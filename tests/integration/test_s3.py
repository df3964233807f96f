"""The object-store paths against a real S3-protocol server: moto's standalone server
(requirements/s3.txt, an environment of its own; no MinIO binary or image can be had here),
started for the module on a free port of 127.0.0.1 and stopped by its pid. It checks every
request's SigV4 signature against the IAM user it is given, so a wrong key is refused as MinIO
or AWS refuse it.

- An `s3://bucket/key.csv` data source of a model spec, read by the lifecycle's reader (MinIO's
  client), gives the rows the same file gives from the commit's tree; each way the read can fail
  is one line naming the fix, quoting neither a key nor the object.
- MLflow's S3 artifact store: the local profile's `mlflow server` (the mlflow environment) with
  `--artifacts-destination s3://...`, a model version logged and read back through the
  registry's functions, its files found in the bucket and none on local disk.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from minio import Minio
from minio.error import S3Error

from onecommit.bench.gateway import server
from onecommit.lifecycle import data, registry, training
from onecommit.lifecycle.spec import ModelSpec, load_spec
from onecommit.platform import local
from onecommit.platform.components import components
from onecommit.platform.envs import ensure_env
from onecommit.settings import PROJECT_ROOT, Settings
from tests.conftest import free_ports, make_settings, stop_platform

BUCKET = "onecommit-data"
EXAMPLE = PROJECT_ROOT / "examples" / "iris-xgboost"
IRIS = load_spec(EXAMPLE / "envs" / "dev" / "models" / "iris.yaml")
ON_S3 = f"s3://{BUCKET}/iris/iris.csv"
# Run in the server's environment, before authentication is switched on: a user allowed S3
# and nothing else, its key, and the bucket.
PROVISION = """
import json, sys
import boto3
endpoint, bucket = sys.argv[1:]
options = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="setup",
               aws_secret_access_key="setup")
iam = boto3.client("iam", **options)
iam.create_user(UserName="onecommit")
iam.put_user_policy(UserName="onecommit", PolicyName="s3", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="onecommit")["AccessKey"]
boto3.client("s3", **options).create_bucket(Bucket=bucket)
print(json.dumps([key["AccessKeyId"], key["SecretAccessKey"]]))
"""


@dataclass(frozen=True)
class Store:
    endpoint: str
    access_key: str
    secret_key: str

    def environment(self) -> dict[str, str]:
        """What a reader of the store is given: the endpoint and the user's keys."""
        return {"ONECOMMIT_S3_ENDPOINT_URL": self.endpoint, "MLFLOW_S3_ENDPOINT_URL":
                self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def client(self) -> Minio:
        return Minio(self.endpoint.removeprefix("http://"), access_key=self.access_key,
                     secret_key=self.secret_key, secure=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """moto's server, its user and bucket provisioned, then every request authenticated."""
    python = ensure_env(make_settings(tmp_path_factory.mktemp("s3-env")), "s3") / "bin"
    port = free_ports(1)[0]
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("s3") / "moto.log"
    with server([str(python / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], {},
                port, "/moto-api/", log):
        provisioned = subprocess.run([str(python / "python"), "-c", PROVISION, endpoint, BUCKET],
                                     capture_output=True, text=True, check=True)
        access_key, secret_key = json.loads(provisioned.stdout)
        # From here on every request must be signed with that user's key.
        httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"0",
                   headers={"Content-Type": "text/plain"}).raise_for_status()
        with pytest.raises(S3Error, match="SignatureDoesNotMatch"):
            Store(endpoint, access_key, "not-the-key").client().bucket_exists(BUCKET)
        yield Store(endpoint, access_key, secret_key)


@pytest.fixture
def configured(store: Store, monkeypatch: pytest.MonkeyPatch) -> Store:
    for name, value in store.environment().items():
        monkeypatch.setenv(name, value)
    return store


def _on_s3(spec: ModelSpec, source: str) -> ModelSpec:
    assert spec.data is not None
    return spec.model_copy(update={"data": spec.data.model_copy(update={"source": source})})


def _upload(store: Store, key: str, content: bytes) -> None:
    store.client().put_object(BUCKET, key, io.BytesIO(content), len(content))


def test_a_spec_reads_its_rows_from_the_store(configured: Store) -> None:
    _upload(configured, "iris/iris.csv", (EXAMPLE / "data" / "iris.csv").read_bytes())
    from_store = data.of_spec(_on_s3(IRIS, ON_S3))
    from_tree = data.of_spec(IRIS, EXAMPLE)
    assert from_store.feature_names == from_tree.feature_names
    for part in ("x_train", "x_holdout", "y_train", "y_holdout"):
        np.testing.assert_array_equal(getattr(from_store, part), getattr(from_tree, part))


def _refusal(source: str) -> str:
    with pytest.raises(data.DataError) as refused:
        data.of_spec(_on_s3(IRIS, source))
    message = str(refused.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(("source", "variables", "expected"), [
    (f"s3://{BUCKET}/iris/missing.csv", {}, r"\(NoSuchKey\): no such object: upload it"),
    ("s3://no-such-bucket/iris.csv", {}, r"\(NoSuchBucket\): no such bucket: create it"),
    (ON_S3, {"AWS_SECRET_ACCESS_KEY": "{wrong_secret}"},
     r"\(SignatureDoesNotMatch\): .*check AWS_SECRET_ACCESS_KEY"),
    (ON_S3, {"AWS_ACCESS_KEY_ID": "{wrong_key}"},
     r"\(InvalidAccessKeyId\): .*check AWS_ACCESS_KEY_ID"),
    (ON_S3, {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""},
     "refused it without an S3 error: .*AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY set"),
    (ON_S3, {"ONECOMMIT_S3_ENDPOINT_URL": "http://user:pass@127.0.0.1:{closed}"},
     r"cannot read it from http://127\.0\.0\.1:\d+ \(MaxRetryError\): is the object store up"),
    (ON_S3, {"ONECOMMIT_S3_ENDPOINT_URL": "127.0.0.1:9000"},
     r"endpoint is no http\(s\)://host\[:port\] URL: fix ONECOMMIT_S3_ENDPOINT_URL"),
])
def test_a_failed_read_is_one_line_naming_the_fix(configured: Store,
                                                  monkeypatch: pytest.MonkeyPatch, source: str,
                                                  variables: dict[str, str],
                                                  expected: str) -> None:
    _upload(configured, "iris/iris.csv", (EXAMPLE / "data" / "iris.csv").read_bytes())
    # The wrong keys are the right ones reversed: no key-shaped literal in a tracked file.
    variables = {name: value.format(closed=free_ports(1)[0],
                                    wrong_secret=configured.secret_key[::-1],
                                    wrong_key=configured.access_key[::-1])
                 for name, value in variables.items()}
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    message = _refusal(source)
    assert re.search(expected, message), message
    keys = [v for n, v in variables.items() if n.startswith("AWS_") and v]
    for secret in (configured.secret_key, *keys, "user:pass"):
        assert secret not in message, message


def test_an_unreadable_object_is_not_quoted(configured: Store) -> None:
    marker = b"PRIVATE-ROW-7f3a"
    _upload(configured, "iris/rows.parquet", b"id,name\n1," + marker + b"\n")
    message = _refusal(f"s3://{BUCKET}/iris/rows.parquet")
    assert "not readable as Parquet" in message
    assert marker.decode() not in message


@pytest.fixture(scope="module")
def mlflow_on_s3(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """The local profile's MLflow server alone, its artifacts in the store. Only the server is
    given the store's keys: this process logs and reads through its artifact proxy."""
    settings = make_settings(tmp_path_factory.mktemp("mlflow-s3"),
                             mlflow_artifacts_destination=f"s3://{BUCKET}/mlflow")
    mlflow = [c for c in components(settings) if c.name == "mlflow"]
    try:
        with pytest.MonkeyPatch.context() as patch:
            # supervisord, and so the server, takes its environment from here at its start.
            for name, value in store.environment().items():
                patch.setenv(name, value)
            local.up(settings, report=lambda _: None, platform=mlflow)
        yield settings
    finally:
        stop_platform(settings)


@contextmanager
def _unauthenticated(store: Store) -> Iterator[None]:
    """moto checks only header-signed requests: a presigned (query-signed) URL fails in its
    authentication with a 500. For MLflow's presigned downloads, the store checks no signature
    inside the block, and every signature again after it."""
    def checked_after(actions: str) -> None:
        httpx.post(f"{store.endpoint}/moto-api/reset-auth", content=actions.encode(),
                   headers={"Content-Type": "text/plain"}).raise_for_status()

    checked_after("inf")
    try:
        yield
    finally:
        checked_after("0")


def test_a_version_is_logged_to_and_read_back_from_the_store(
        mlflow_on_s3: Settings, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_spec(PROJECT_ROOT / "gitops" / "envs" / "dev" / "models" / "breast-cancer.yaml")
    split = data.of_spec(spec)
    onnx_bytes = training.candidate(spec, split, None)
    client = registry.client(mlflow_on_s3.url(mlflow_on_s3.mlflow_port))
    context = registry.RunContext(git_sha="s3", env="dev", dag_run_id="test-s3")
    artifact = registry.Artifact.trained(onnx_bytes, split.x_holdout, split.feature_names)
    candidate = registry.log_candidate(client, spec.model, artifact, {}, {}, context)
    version, _ = registry.register(client, spec.model, candidate, context)
    stored = {o.object_name for o in store.client().list_objects(BUCKET, "mlflow/",
                                                                 recursive=True)}
    assert {Path(str(name)).name for name in stored} >= {"model.onnx", "rows.npy", "MLmodel"}
    assert not (mlflow_on_s3.state_dir / "mlflow" / "artifacts").exists()

    # MLflow's default for an S3 store: the server hands out presigned URLs, and the client
    # downloads from the store itself.
    with _unauthenticated(store):
        assert registry.load_onnx(client, spec.model, version) == onnx_bytes
    # Through the server's proxy: the server reads with its own keys, every signature checked.
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "false")
    assert registry.load_onnx(client, spec.model, version) == onnx_bytes
    np.testing.assert_array_equal(registry.golden_rows(client, spec.model, version),
                                  artifact.golden)
