"""`invoke seal` and `invoke rotate` against a throwaway git checkout: what lands in the tree,
what stays out of git, and that a refusal writes nothing."""

from __future__ import annotations

import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import yaml

from onecommit.secrets import SecretsError
from onecommit.secrets.catalog import CREDENTIALS, sealed_path, sealing_cert_path
from onecommit.secrets.local_store import gateway_token_files
from onecommit.secrets.manifests import seal_tree
from onecommit.secrets.plaintext import env_variable, require_untracked
from onecommit.secrets.rotation import rotate
from onecommit.secrets.sealing import generate_controller_keypair, unseal_sealed_secret
from onecommit.settings import Settings

ENVS = ("dev", "prod")
SEALED_SECRET_CRD = Path("crds/sealed-secrets/bitnami.com_sealedsecrets.yaml")


@dataclass(frozen=True)
class Tree:
    root: Path
    cert: Path
    key_pem: bytes
    settings: Settings


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def controller() -> tuple[bytes, bytes]:
    return generate_controller_keypair("sealed-secrets-test", key_size=2048)


def make_tree(tmp_path: Path, controller: tuple[bytes, bytes], settings: Settings) -> Tree:
    """A git checkout with the project's envs; settings point at its secrets file and a
    controller certificate (their state dir is kept)."""
    root = tmp_path / "repo"
    for env in ENVS:
        (root / "gitops" / "envs" / env).mkdir(parents=True)
        (root / "gitops" / "envs" / env / "model.yaml").write_text("model: m\n")
    (root / ".gitignore").write_text("secrets.local.yaml\n.onecommit/\n")
    git(root, "init", "-q")
    git(root, "add", ".")
    key_pem, cert_pem = controller
    cert = tmp_path / "controller.pem"
    cert.write_bytes(cert_pem)
    settings = settings.model_copy(update={"secrets_file": root / "secrets.local.yaml",
                                           "sealing_cert": cert})
    return Tree(root, cert, key_pem, settings)


@pytest.fixture
def tree(tmp_path: Path, controller: tuple[bytes, bytes]) -> Tree:
    return make_tree(tmp_path, controller, Settings(state_dir=tmp_path / "repo" / ".onecommit"))


def sealed_values(tree: Tree, env: str, secret: str, layer: str = "core",
                  key_pem: bytes | None = None) -> dict[str, bytes]:
    manifest = yaml.safe_load(sealed_path(tree.root, env, secret, layer).read_text())
    return unseal_sealed_secret(manifest, key_pem or tree.key_pem)


def source(tree: Tree) -> dict[str, dict[str, dict[str, str]]]:
    loaded: dict[str, dict[str, dict[str, str]]] = yaml.safe_load(
        tree.settings.secrets_file.read_text())
    return loaded


def tree_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and ".git" not in p.parts}


def test_rotate_seals_a_new_value_per_env_and_keeps_the_plaintext_out_of_git(tree: Tree) -> None:
    result = rotate(tree.settings, tree.root, "object-store-keys", report=lambda _: None)
    values = source(tree)
    for env in ENVS:
        plain = values[env]["object-store-keys"]
        for secret in ("mlflow-s3", "triton-s3"):
            assert sealed_values(tree, env, secret) == {k: v.encode() for k, v in plain.items()}
        # The same key pair, as MinIO's root user and in Airflow's connection URI.
        assert sealed_values(tree, env, "minio-root", "baseline") == {
            "rootUser": plain["AWS_ACCESS_KEY_ID"].encode(),
            "rootPassword": plain["AWS_SECRET_ACCESS_KEY"].encode()}
        uri = sealed_values(tree, env, "airflow-s3-connection")["uri"].decode()
        assert uri.startswith(f"aws://{plain['AWS_ACCESS_KEY_ID']}:")
        assert "endpoint_url=http%3A%2F%2Fminio.onecommit-baseline" in uri
    assert values["dev"] != values["prod"]
    assert len(result.written) == 8
    assert stat.S_IMODE(tree.settings.secrets_file.stat().st_mode) == 0o600
    require_untracked(tree.settings.secrets_file)
    assert result.local == "no local service uses object-store-keys: nothing to apply"


def test_rotate_again_replaces_every_value(tree: Tree) -> None:
    rotate(tree.settings, tree.root, "webhook-signing-secret", report=lambda _: None)
    first = source(tree)
    rotate(tree.settings, tree.root, "webhook-signing-secret", envs=["prod"],
           report=lambda _: None)
    second = source(tree)
    assert second["dev"] == first["dev"]
    assert second["prod"] != first["prod"]
    assert sealed_values(tree, "prod", "webhook-signing-secret") == {
        "secret": second["prod"]["webhook-signing-secret"]["secret"].encode()}


def test_rotating_the_admin_token_without_a_running_gateway_replaces_the_file(tree: Tree) -> None:
    current, rotation = gateway_token_files(tree.settings.state_dir)
    current.parent.mkdir(parents=True)
    current.write_text("old-token\n")
    result = rotate(tree.settings, tree.root, "gateway-admin-token", report=lambda _: None)
    assert current.read_text().strip() not in ("old-token", "")
    assert not rotation.exists()
    assert stat.S_IMODE(current.stat().st_mode) == 0o600
    assert "next `invoke up`" in result.local
    token = source(tree)["dev"]["gateway-admin-token"]["token"]
    assert token != current.read_text().strip()  # the local profile has its own credential


def test_sealed_manifests_match_the_controller_crd(tree: Tree) -> None:
    rotate(tree.settings, tree.root, "gateway-admin-token", report=lambda _: None)
    crd = yaml.safe_load((tree.settings.shared_dir / SEALED_SECRET_CRD).read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    manifest = yaml.safe_load(sealed_path(tree.root, "dev", "gateway-admin-token").read_text())
    jsonschema.validate(manifest, schema)
    assert manifest["metadata"] == {"name": "gateway-admin-token", "namespace": "onecommit-dev"}


def test_seal_reads_the_file_and_the_environment(tree: Tree) -> None:
    tree.settings.secrets_file.write_text(yaml.safe_dump(
        {"dev": {"gateway-admin-token": {"token": "from-the-file"}}}))
    environ = {env_variable("prod", "gateway-admin-token", "token"): "from-the-environment"}
    written = seal_tree(tree.root, tree.settings.secrets_file, tree.cert, None, environ)
    assert written == ([sealed_path(tree.root, env, "gateway-admin-token") for env in ENVS]
                       + [sealing_cert_path(tree.root, env) for env in ENVS])
    assert sealing_cert_path(tree.root, "dev").read_bytes() == tree.cert.read_bytes()
    assert sealed_values(tree, "dev", "gateway-admin-token") == {"token": b"from-the-file"}
    assert sealed_values(tree, "prod", "gateway-admin-token") == {"token": b"from-the-environment"}


def test_seal_refuses_a_tracked_plaintext_file_and_writes_nothing(tree: Tree) -> None:
    secrets_file = tree.settings.secrets_file
    secrets_file.write_text(yaml.safe_dump({"dev": {"gateway-admin-token": {"token": "t"}}}))
    git(tree.root, "add", "--force", secrets_file.name)
    before = tree_files(tree.root)
    with pytest.raises(SecretsError, match=r"secrets\.local\.yaml is tracked by git.*git rm"):
        seal_tree(tree.root, secrets_file, tree.cert, None, {})
    assert tree_files(tree.root) == before


def test_rotate_refuses_a_destination_git_could_commit_and_writes_nothing(tree: Tree) -> None:
    exposed = tree.settings.model_copy(update={"secrets_file": tree.root / "gitops" / "creds.yaml"})
    before = tree_files(tree.root)
    with pytest.raises(SecretsError, match=r"creds\.yaml is not git-ignored.*\.gitignore"):
        rotate(exposed, tree.root, "gateway-admin-token", report=lambda _: None)
    assert tree_files(tree.root) == before


def test_plaintext_outside_any_repository_is_allowed(tmp_path: Path) -> None:
    require_untracked(tmp_path / "outside" / "secrets.yaml")


@pytest.mark.parametrize(("content", "problem"), [
    ({"staging": {}}, "unknown env 'staging'"),
    ({"dev": {"db-password": {"password": "x"}}}, "unknown credential 'db-password'"),
    ({"dev": {"object-store-keys": {"AWS_ACCESS_KEY_ID": "x"}}},
     "missing: AWS_SECRET_ACCESS_KEY"),
    ({"dev": {"gateway-admin-token": {"token": ""}}}, "token must be a non-empty string"),
])
def test_bad_source_is_named(tree: Tree, content: object, problem: str) -> None:
    tree.settings.secrets_file.write_text(yaml.safe_dump(content))
    with pytest.raises(SecretsError, match=problem):
        seal_tree(tree.root, tree.settings.secrets_file, tree.cert, None, {})
    assert not (tree.root / "gitops" / "envs" / "dev" / "sealed").exists()


def test_seal_needs_a_certificate_and_something_to_seal(tree: Tree) -> None:
    with pytest.raises(SecretsError, match=r"no sealing certificate.*kubeseal --fetch-cert"):
        seal_tree(tree.root, tree.settings.secrets_file, None, None, {})
    with pytest.raises(SecretsError, match=r"nothing to seal.*invoke rotate"):
        seal_tree(tree.root, tree.settings.secrets_file, tree.cert, None, {})
    with pytest.raises(SecretsError, match="unknown env 'qa'"):
        seal_tree(tree.root, tree.settings.secrets_file, tree.cert, ["qa"], {})


def test_unknown_credential_names_the_known_ones(tree: Tree) -> None:
    with pytest.raises(SecretsError, match=", ".join(CREDENTIALS)):
        rotate(tree.settings, tree.root, "ssh-key", report=lambda _: None)


def test_each_env_is_sealed_for_the_certificate_it_records(tree: Tree) -> None:
    prod_key, prod_cert = generate_controller_keypair("prod-controller", key_size=2048)
    sealing_cert_path(tree.root, "dev").write_bytes(tree.cert.read_bytes())
    sealing_cert_path(tree.root, "prod").write_bytes(prod_cert)
    recorded = tree.settings.model_copy(update={"sealing_cert": None})
    rotate(recorded, tree.root, "redis-password", report=lambda _: None)
    values = source(tree)
    for env, key in (("dev", tree.key_pem), ("prod", prod_key)):
        assert sealed_values(tree, env, "redis-auth", "optional", key) == {
            "password": values[env]["redis-password"]["password"].encode()}
    with pytest.raises(SecretsError, match="wrong key"):
        sealed_values(tree, "prod", "redis-auth", "optional", tree.key_pem)


def test_a_new_certificate_must_reseal_the_whole_env(tree: Tree) -> None:
    rotate(tree.settings, tree.root, "gateway-admin-token", report=lambda _: None)
    _, other_cert = generate_controller_keypair("another-controller", key_size=2048)
    other = tree.root.parent / "other.pem"
    other.write_bytes(other_cert)
    before = {p: p.read_bytes() for p in tree_files(tree.root)}
    moved = tree.settings.model_copy(update={"sealing_cert": other})
    with pytest.raises(SecretsError, match=r"gateway-admin-token\.yaml is sealed for the "
                                           r"certificate .* records.*invoke reseal"):
        rotate(moved, tree.root, "webhook-signing-secret", report=lambda _: None)
    assert {p: p.read_bytes() for p in tree_files(tree.root)} == before


def test_an_env_without_a_recorded_certificate_is_named(tree: Tree) -> None:
    recorded = tree.settings.model_copy(update={"sealing_cert": None})
    with pytest.raises(SecretsError, match=r"no sealing certificate for dev: .*sealing-cert\.pem "
                                           r"is missing; pass --cert"):
        rotate(recorded, tree.root, "gateway-admin-token", report=lambda _: None)


def test_rotating_all_moves_an_env_to_its_new_controller(tree: Tree) -> None:
    rotate(tree.settings, tree.root, "all", report=lambda _: None)
    dev_before = {p: p.read_bytes() for p in tree_files(tree.root / "gitops/envs/dev")}
    prod_key, prod_cert = generate_controller_keypair("prod-controller", key_size=2048)
    (tree.root.parent / "prod.pem").write_bytes(prod_cert)
    moved = tree.settings.model_copy(update={"sealing_cert": tree.root.parent / "prod.pem"})
    result = rotate(moved, tree.root, "all", envs=["prod"], report=lambda _: None)
    assert len(result.written) == sum(len(c.secrets) for c in CREDENTIALS.values())
    assert sealing_cert_path(tree.root, "prod").read_bytes() == prod_cert
    token = source(tree)["prod"]["gateway-admin-token"]["token"]
    assert sealed_values(tree, "prod", "gateway-admin-token", key_pem=prod_key) == {
        "token": token.encode()}
    assert {p: p.read_bytes() for p in tree_files(tree.root / "gitops/envs/dev")} == dev_before
