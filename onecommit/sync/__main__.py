"""`python -m onecommit.sync`: one sync pass, as the hook, the resync and `invoke sync` run it
(see the package's docstring)."""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict

from onecommit.errors import OnecommitError
from onecommit.settings import Settings
from onecommit.sync import __doc__ as DOC
from onecommit.sync import git
from onecommit.sync.run import sync


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m onecommit.sync", description=DOC,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", required=True, help="gitops repository: path or URL")
    parser.add_argument("--sha", default="refs/heads/main",
                        help="the tip to converge on (default: the main branch's)")
    parser.add_argument("--env", default=None, help="gitops env (default: ONECOMMIT_GITOPS_ENV)")
    parser.add_argument("--model", default=None, help="converge only this model")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the diff; record, trigger and mark nothing")
    parser.add_argument("--every", type=float, default=None, metavar="SECONDS",
                        help="keep going: a pass every SECONDS (the local profile's resync)")
    args = parser.parse_args(argv)
    settings = Settings()
    # A hook inherits GIT_DIR and friends; the git calls here name their repository.
    for variable in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        os.environ.pop(variable, None)
    if args.every is None:
        return one_pass(settings, args)
    while True:
        # A failed pass (the remote not created yet, a service down) is retried next time.
        one_pass(settings, args)
        time.sleep(args.every)


def one_pass(settings: Settings, args: argparse.Namespace) -> int:
    """One pass: prints the diff of what is OutOfSync, then the records it appended."""
    try:
        with git.local_repo(args.repo) as repo:
            tip = git.resolve(repo, args.sha)
            result = sync(settings, repo, tip, args.env or settings.gitops_env, args.repo,
                          only=args.model, dry_run=args.dry_run)
    except OnecommitError as error:
        print(f"sync failed: {error}", flush=True)
        return 1
    for diff in result.diffs:
        for line in diff.lines():
            print(line, flush=True)
    for record in result.records:
        print(json.dumps(asdict(record)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
