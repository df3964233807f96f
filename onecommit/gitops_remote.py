"""The local profile's gitops remote: a bare repository in the state dir, seeded once from the
project's `gitops/` tree, a working clone for the user, and a post-receive hook that syncs each
pushed commit (`onecommit.sync`) in the background, so a push returns at once."""

from __future__ import annotations

import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from onecommit.commands import run
from onecommit.errors import OnecommitError
from onecommit.settings import PROJECT_ROOT, Settings

BRANCH = "main"
# Commits made by the platform itself (the seed); the user's clone gets its own identity.
_IDENTITY = ("-c", "user.name=onecommit", "-c", "user.email=onecommit@localhost")


class RemoteError(OnecommitError):
    """The gitops remote could not be created or used; the message says why."""


def remote_dir(settings: Settings) -> Path:
    return settings.state_dir / "gitops" / "remote.git"


def work_dir(settings: Settings) -> Path:
    return settings.state_dir / "gitops" / "work"


def last_synced_file(settings: Settings) -> Path:
    """The last commit the sync took up (`onecommit.sync`); the remote's seed counts as one."""
    return settings.state_dir / "gitops" / "last_synced"


def sync_log(settings: Settings) -> Path:
    return settings.logs_dir / "sync.log"


def git(*args: str, cwd: Path | None = None) -> str:
    return run(["git", *args], cwd=cwd).stdout.strip()


def ensure(settings: Settings) -> None:
    """Create the remote and the working clone if missing; (re)write the hook either way, so
    it always carries the platform's current settings."""
    if shutil.which("git") is None:
        raise RemoteError("git is not installed: install git (e.g. `apt-get install git`)")
    remote = remote_dir(settings)
    if not (remote / "HEAD").exists():
        _seed(remote, settings.gitops_seed)
        # The seed is a commit the sync has seen; its models deploy as the tip's, at `up`.
        last_synced_file(settings).write_text(head(settings))
    _write_hook(settings, remote)
    catch_up(settings)
    work = work_dir(settings)
    if not (work / ".git").exists():
        git("clone", "--quiet", "--branch", BRANCH, str(remote), str(work))
        git("config", "user.name", "onecommit user", cwd=work)
        git("config", "user.email", "user@onecommit.localhost", cwd=work)


def catch_up(settings: Settings) -> None:
    """Sync the tip now, in the background, as a push to it would (through the hook): what
    was pushed while the platform was down, and the seed's models at the first `up`."""
    remote = remote_dir(settings)
    tip = head(settings)
    run([remote / "hooks" / "post-receive"], input=f"{tip} {tip} refs/heads/{BRANCH}\n",
        cwd=remote)


def _seed(remote: Path, seed: Path) -> None:
    """A bare repository whose first commit is the seed tree (the project's `gitops/`). Built
    beside the final path and renamed, so an interrupted seed leaves no half repository."""
    remote.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".remote.", dir=remote.parent))
    try:
        git("init", "--quiet", "--bare", "--initial-branch", BRANCH, str(staging))
        with tempfile.TemporaryDirectory(prefix="onecommit-seed-") as scratch:
            tree = Path(scratch) / "gitops"
            shutil.copytree(seed, tree)
            git("init", "--quiet", "--initial-branch", BRANCH, cwd=tree)
            git("add", "--all", cwd=tree)
            git(*_IDENTITY, "commit", "--quiet", "-m", "Seed the gitops remote from the "
                "onecommit project", cwd=tree)
            git("push", "--quiet", str(staging), BRANCH, cwd=tree)
        staging.rename(remote)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_hook(settings: Settings, remote: Path) -> None:
    """The post-receive hook: one background sync per push to main (a force-push included),
    output to the sync log.
    The platform's settings go into a 0600 file beside it (they may carry a webhook URL)."""
    env_file = remote / "onecommit.env"
    env_file.touch(mode=0o600)
    env_file.write_text("".join(f"export {name}={shlex.quote(value)}\n"
                                for name, value in sorted(settings.as_environment().items())))
    log = sync_log(settings)
    log.parent.mkdir(parents=True, exist_ok=True)
    # The sync converges on the branch's tip, whichever push's hook runs it.
    command = (f"{shlex.quote(sys.executable)} -m onecommit.sync "
               f"--repo {shlex.quote(str(remote))}")
    hook = remote / "hooks" / "post-receive"
    hook.write_text(
        "#!/bin/sh\n"
        "# Written by onecommit (`invoke up`): syncs each commit pushed to main.\n"
        f". {shlex.quote(str(env_file))}\n"
        "unset GIT_DIR GIT_QUARANTINE_PATH\n"
        "while read old new ref; do\n"
        f'  [ "$ref" = "refs/heads/{BRANCH}" ] || continue\n'
        f"  echo \"onecommit: syncing $new (log: {log})\"\n"
        f"  (cd {shlex.quote(str(PROJECT_ROOT))} && {command}) "
        f">> {shlex.quote(str(log))} 2>&1 < /dev/null &\n"
        "done\n"
    )
    hook.chmod(0o755)


def head(settings: Settings) -> str:
    return git("--git-dir", str(remote_dir(settings)), "rev-parse", BRANCH)
