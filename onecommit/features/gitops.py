"""The kind and cluster profiles: attaching the layer is a commit that flips its toggle
(`gitops/envs/<env>/optional.yaml`), which Argo CD's optional ApplicationSet follows."""

from __future__ import annotations

from pathlib import Path

from onecommit.commands import CommandError, run
from onecommit.gitops_toggle import ATTACHED, DETACHED, ToggleError, set_state, toggle_file
from onecommit.settings import PROJECT_ROOT


def flip(env: str, attach: bool, root: Path = PROJECT_ROOT) -> list[str]:
    """Set every add-on of `env` to attached or detached and commit the toggle file alone;
    returns the add-ons that changed (none: nothing committed)."""
    state = ATTACHED if attach else DETACHED
    changed = set_state(root, env, state)
    if changed:
        path = toggle_file(root, env)
        try:
            run(["git", "-C", root, "commit", "--quiet", "-m",
                 f"Optional layer of {env}: {', '.join(changed)} {state}", "--", path])
        except CommandError as error:
            raise ToggleError(f"{error}; the file is flipped but not committed: commit it, or "
                              "revert it") from None
    return changed
