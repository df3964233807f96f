"""`invoke seal / reseal / rotate / certs`: secrets as code and the internal CA."""

from __future__ import annotations

import os
from pathlib import Path

from invoke.context import Context

from onecommit.platform import supervisor
from onecommit.secrets import SecretsError, manifests
from onecommit.secrets.ca import ensure_certs
from onecommit.secrets.catalog import ALL, CREDENTIALS
from onecommit.secrets.rotation import rotate as rotate_credential
from onecommit.secrets.sealing import reseal_tree
from onecommit.settings import PROJECT_ROOT
from onecommit.tasks import task
from onecommit.tasks.platform import load_settings


def _relative(path: Path) -> str:
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)


CERT_HELP = ("controller certificate for every chosen env, recorded as theirs (default "
             "ONECOMMIT_SEALING_CERT, else each env's gitops/envs/<env>/sealing-cert.pem)")


@task(iterable=["env"], help={"cert": CERT_HELP,
                              "env": "only this env (repeatable; default: every env)"})
def seal(c: Context, cert: str | None = None, env: list[str] | None = None) -> None:
    """Seal the values of secrets.local.yaml / ONECOMMIT_SECRET_* into gitops/envs/*/sealed/,
    each env for its controller's certificate."""
    settings = load_settings(sealing_cert=cert)
    written = manifests.seal_tree(PROJECT_ROOT, settings.secrets_file, settings.sealing_cert,
                                  env or None, os.environ)
    for path in written:
        print(f"{'recorded' if path.suffix == '.pem' else 'sealed'} {_relative(path)}")


@task(iterable=["path"], help={"old_key": "the controller's previous private key (PEM)",
                               "new_cert": "the controller's new certificate (PEM)",
                               "path": "file or directory to re-seal (repeatable; default gitops)"})
def reseal(c: Context, old_key: str, new_cert: str, path: list[str] | None = None) -> None:
    """Re-encrypt every SealedSecret for a renewed controller key (and replace the old key's
    certificate records): each verified with the old key first, nothing written unless all
    succeed."""
    targets = [Path(p) for p in path] if path else [PROJECT_ROOT / "gitops"]
    try:
        old_pem, new_pem = Path(old_key).read_bytes(), Path(new_cert).read_bytes()
    except OSError as error:
        raise SecretsError(f"cannot read {error.filename}: {error.strerror}") from None
    rewritten = reseal_tree(targets, old_pem, new_pem)
    for written in rewritten:
        print(f"re-sealed {_relative(written)}")
    print(f"{len(rewritten)} file(s) re-sealed for the new certificate")


@task(iterable=["env"], help={"name": f"{', '.join(CREDENTIALS)}, or {ALL} (every one at once)",
                              "cert": CERT_HELP,
                              "env": "only this env (repeatable; default: every env)",
                              "grace_s": "seconds the old admin token stays valid after the "
                                         "switch, for requests in flight"})
def rotate(c: Context, name: str, cert: str | None = None, env: list[str] | None = None,
           grace_s: float = 5.0) -> None:
    """Generate a new credential (or all of them), seal it for every env, and switch the running
    local platform to it without downtime."""
    settings = load_settings(sealing_cert=cert)
    result = rotate_credential(settings, PROJECT_ROOT, name, envs=env or None,
                               grace_s=grace_s, environ=dict(os.environ),
                               gateway_running=lambda: supervisor.is_running(settings, "gateway"))
    for path in result.written:
        print(f"sealed {_relative(path)}")
    print(result.local)


@task(help={"renew": "re-issue every leaf certificate now"})
def certs(c: Context, renew: bool = False) -> None:
    """Create (or renew) the internal CA and the leaf certificates of the gateway and the UIs."""
    settings = load_settings()
    issued = ensure_certs(settings, renew=renew)
    for cert in issued:
        state = "issued" if cert.renewed else "kept"
        print(f"{cert.name:<8} {state:<6} until {cert.not_after:%Y-%m-%d}  "
              f"{', '.join(cert.hosts) or '-':<32} {cert.cert}")
    print(f"trust {issued[0].cert} in clients; `invoke up --tls` serves the gateway with it")
