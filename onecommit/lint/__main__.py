"""`python -m onecommit.lint [--root DIR] [--shared-dir DIR] [--state-dir DIR]`.

Prints one line per finding (file: object: problem) and exits 1 if there is any.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from onecommit.lint import DEFAULT_SHARED_DIR, default_state_dir, run_lint
from onecommit.lint.tools import ToolError

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m onecommit.lint",
                                     description=__doc__)
    parser.add_argument("--root", type=Path, default=PROJECT_ROOT,
                        help="tree to check (default: this checkout)")
    parser.add_argument("--shared-dir", type=Path, default=DEFAULT_SHARED_DIR,
                        help="directory holding crds/ (default: ../shared)")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="where helm is extracted (default: $ONECOMMIT_STATE_DIR"
                             " or .onecommit)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    root: Path = args.root.resolve()
    state_dir: Path = args.state_dir or default_state_dir(PROJECT_ROOT)
    try:
        findings = run_lint(root, args.shared_dir, state_dir)
    except ToolError as error:
        print(f"onecommit.lint: {error}", file=sys.stderr)
        return 2
    for finding in findings:
        print(finding)
    elapsed = time.monotonic() - started
    print(f"onecommit.lint: {len(findings)} finding(s) in {elapsed:.1f}s", file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
