"""Where plaintext credentials may live: a git-ignored local file, or the environment.

The file (`secrets.local.yaml` by default) maps env → credential → key → value:

    dev:
      gateway-admin-token:
        token: ...

A variable `ONECOMMIT_SECRET_<ENV>_<CREDENTIAL>_<KEY>` (upper case, `-` as `_`) overrides one
value, e.g. `ONECOMMIT_SECRET_PROD_GATEWAY_ADMIN_TOKEN_TOKEN`, so CI can seal without a file.
Every read or write first proves that git cannot commit the file.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from onecommit.commands import run
from onecommit.secrets import SecretsError
from onecommit.secrets.catalog import CREDENTIALS, check_values

# env → credential name → key → value
Values = dict[str, dict[str, dict[str, str]]]
HEADER = ("# Plaintext credentials for `invoke seal` / `invoke rotate`. Git-ignored: never commit "
          "this file.\n")


def _git(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("git") is None:
        raise SecretsError("git is not installed: cannot prove that a plaintext file stays out "
                           "of version control")
    return run(["git", "-C", directory, *args], timeout_s=30, check=False)


def require_untracked(path: Path) -> None:
    """Refuse a plaintext path git could commit: it must be outside every work tree, or both
    untracked and ignored (what `git ls-files` and `git check-ignore` say)."""
    path = path.absolute()
    directory = next(p for p in path.parents if p.is_dir())
    top = _git(directory, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        return  # not inside a git work tree
    if _git(directory, "ls-files", "--error-unmatch", "--", str(path)).returncode == 0:
        raise SecretsError(f"{path} is tracked by git: plaintext must never be committed. "
                           f"Run `git rm --cached {path.name}`, add it to .gitignore and rotate "
                           "every credential it held")
    ignored = _git(directory, "check-ignore", "-q", "--", str(path))
    if ignored.returncode == 1:
        raise SecretsError(f"{path} is not git-ignored, so it could be committed: add it to "
                           f"{top.stdout.strip()}/.gitignore or keep it outside the repository")
    if ignored.returncode != 0:
        raise SecretsError(f"git check-ignore failed for {path}: {ignored.stderr.strip()}")


def env_variable(env: str, name: str, key: str) -> str:
    return "ONECOMMIT_SECRET_" + "_".join(p.upper().replace("-", "_") for p in (env, name, key))


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SecretsError(f"{where} must be a mapping")
    return value


def _from_file(path: Path, envs: list[str]) -> Values:
    if not path.exists():
        return {}
    require_untracked(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise SecretsError(f"{path} is not valid YAML: {error}") from None
    values: Values = {}
    for env, credentials in _mapping(data, str(path)).items():
        if env not in envs:
            raise SecretsError(f"{path}: unknown env {env!r} (the tree has: {', '.join(envs)})")
        for name, entry in _mapping(credentials, f"{path}: {env}").items():
            if name not in CREDENTIALS:
                raise SecretsError(f"{path}: {env}: unknown credential {name!r}: choose one of "
                                   f"{', '.join(CREDENTIALS)}")
            where = f"{path}: {env}.{name}"
            values.setdefault(env, {})[name] = dict(_mapping(entry, where))
    return values


def load(path: Path, envs: list[str], environ: Mapping[str, str]) -> Values:
    """Every credential given, per env; the environment overrides the file key by key."""
    values = _from_file(path, envs)
    for env in envs:
        for name, cred in CREDENTIALS.items():
            for key in cred.keys:
                variable = env_variable(env, name, key)
                if variable in environ:
                    values.setdefault(env, {}).setdefault(name, {})[key] = environ[variable]
    return {env: {name: check_values(CREDENTIALS[name], entry, f"{env}.{name} ({path} or "
                                     f"{env_variable(env, name, '<KEY>')})")
                  for name, entry in credentials.items()}
            for env, credentials in values.items()}


def render(values: Values) -> str:
    """The file's content; write it only after `require_untracked`, with mode 0600."""
    return HEADER + yaml.safe_dump(values, sort_keys=True)
