"""Git access for the sync: the commits to take up, what each changed, whether history was
rewritten, and the object ids that fingerprint a file or a folder of a commit."""

from __future__ import annotations

from pathlib import Path

from onecommit.commands import run
from onecommit.commits import checkout, local_repo

__all__ = ["changed_files", "checkout", "local_repo", "object_id", "pending_commits",
           "resolve", "rewritten"]


def _git(repo: Path, *args: str) -> str:
    return run(["git", "--git-dir", repo, *args]).stdout


def _git_ok(repo: Path, *args: str) -> bool:
    return run(["git", "--git-dir", repo, *args], check=False).returncode == 0


def resolve(repo: Path, revision: str) -> str:
    """The commit a revision names (a branch, a tag, a sha)."""
    return _git(repo, "rev-parse", "--verify", f"{revision}^{{commit}}").strip()


def changed_files(repo: Path, sha: str) -> list[str]:
    """Files the commit changed against its first parent (every file for a root commit)."""
    listing = _git(repo, "diff-tree", "--no-commit-id", "--name-only", "-r", "--root",
                   "-m", "--first-parent", sha)
    return sorted(set(listing.split()))


def _known(repo: Path, sha: str | None) -> bool:
    return bool(sha) and _git_ok(repo, "cat-file", "-e", f"{sha}^{{commit}}")


def rewritten(repo: Path, sha: str, last_synced: str | None) -> bool:
    """Whether the tip no longer descends from the last synced commit: a force-push, back to
    an older commit or onto another history."""
    if not last_synced or sha == last_synced:
        return False
    if not _known(repo, last_synced):
        return True  # The commit it replaced is gone from the repository.
    return not _git_ok(repo, "merge-base", "--is-ancestor", last_synced, sha)


def pending_commits(repo: Path, sha: str, last_synced: str | None) -> list[str]:
    """Commits on the first-parent chain after `last_synced` up to `sha`, oldest first; just
    `sha` when it does not descend from `last_synced` (nothing synced here before, or a
    force-push: the tip is followed like any tip)."""
    if sha == last_synced:
        return []
    if not _known(repo, last_synced) or rewritten(repo, sha, last_synced):
        return [sha]
    return _git(repo, "rev-list", "--reverse", "--first-parent", f"{last_synced}..{sha}").split()


def object_id(repo: Path, sha: str, path: str) -> str | None:
    """Git's content id of a file or folder in the commit (equal content, equal id); None
    when the commit has no such path."""
    result = run(["git", "--git-dir", repo, "rev-parse", "--verify", "--quiet",
                  f"{sha}:{path}"], check=False)
    return result.stdout.strip() or None if result.returncode == 0 else None
