"""The reference reader and the verdict of secretrefs.py, on objects small enough to read."""

from __future__ import annotations

from pathlib import Path

from onecommit.lint.secretrefs import Provider, Ref, check_ref, object_refs, value_refs

POD = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"}, "spec": {
    "template": {"spec": {
        "imagePullSecrets": [{"name": "registry"}],
        "containers": [{"name": "api", "env": [
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "tokens", "key": "admin"}}},
            {"name": "MAYBE", "valueFrom": {"secretKeyRef": {"name": "extra", "key": "k",
                                                             "optional": True}}}],
            "envFrom": [{"secretRef": {"name": "settings"}}]}],
        "volumes": [
            {"name": "tls", "secret": {"secretName": "api-tls", "items": [{"key": "tls.crt",
                                                                           "path": "c"}]}},
            {"name": "bundle", "projected": {"sources": [
                {"secret": {"name": "ca", "items": [{"key": "ca.crt", "path": "ca"}]}}]}}]}}}}


def test_every_kind_of_reference_is_read() -> None:
    assert sorted(object_refs(POD), key=lambda r: r.name) == [
        Ref("api-tls", ("tls.crt",), "volume tls"),
        Ref("ca", ("ca.crt",), "secret of bundle"),
        Ref("registry", (), "imagePullSecrets"),
        Ref("settings", (), "envFrom secretRef in api"),
        Ref("tokens", ("admin",), "secretKeyRef of TOKEN"),
    ]


def test_an_ingress_tls_secret_is_read_as_such() -> None:
    ingress = {"kind": "Ingress", "spec": {"tls": [{"hosts": ["h"], "secretName": "h-tls"}]}}
    assert list(object_refs(ingress)) == [Ref("h-tls", (), "Ingress TLS", tls=True)]


def test_chart_values_naming_a_secret_are_read_with_their_key_names() -> None:
    values = {"auth": {"enabled": True, "existingSecret": "redis-auth",
                       "existingSecretPasswordKey": "password"}}
    assert list(value_refs("redis", values)) == [
        Ref("redis-auth", ("password",), "value auth.existingSecret")]
    assert list(value_refs("redis", {"auth": {**values["auth"], "enabled": False}})) == []
    listed = {"secret": [{"envName": "A", "secretName": "s3", "secretKey": "uri"},
                         {"envName": "B", "secretName": "other"}]}
    assert list(value_refs("airflow", listed)) == [
        Ref("s3", ("uri",), "value secret[].secretName"),
        Ref("other", ("value",), "value secret[].secretName")]


def test_the_verdict_names_the_file_to_define_the_secret_in() -> None:
    known = {("onecommit-dev", "tokens"): Provider("SealedSecret", "gitops/x.yaml",
                                                   frozenset({"token"})),
             ("onecommit-prod", "lost"): Provider("SealedSecret", "gitops/y.yaml",
                                                  frozenset({"k"})),
             ("onecommit-dev", "outside"): Provider("made outside git by ops", "list", None)}
    root = Path("/tree")
    (missing,) = check_ref(root, "dev", "onecommit-dev", Ref("lost", ("k",), "volume v"), known)
    assert missing == ("volume v reads Secret 'lost', which nothing defines in namespace "
                       "onecommit-dev (there is a SealedSecret in onecommit-prod: gitops/y.yaml):"
                       " define it in gitops/envs/dev/sealed/lost.yaml (a credential in "
                       "onecommit/secrets/catalog.py, then `invoke rotate`)")
    (key,) = check_ref(root, "dev", "onecommit-dev", Ref("tokens", ("admin",), "env T"), known)
    assert key == ("env T reads key 'admin' of Secret 'tokens', which gitops/x.yaml does not "
                   "define (its keys: token)")
    assert check_ref(root, "dev", "onecommit-dev", Ref("outside", ("any",), "env O"), known) == []
    (tls,) = check_ref(root, "dev", "onecommit-dev", Ref("gw-tls", (), "Ingress TLS", True), {})
    assert tls.endswith("define it in a Certificate with secretName gw-tls in "
                        "gitops/envs/dev/certificates.yaml")
