"""The optional layer's committed toggle: `gitops/envs/<env>/optional.yaml`.

A list of add-ons, each `{component, state}` with state `attached` or `detached`. On clusters the
optional ApplicationSet deploys the attached ones (its git files generator reads this file), so
attaching or detaching is a commit: `set_state` rewrites only the `state:` lines, keeping the
file's comments and order, atomically.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from onecommit.errors import OnecommitError
from onecommit.files import write_file

ATTACHED, DETACHED = "attached", "detached"
STATES = (ATTACHED, DETACHED)
_ENTRY = re.compile(r"^-\s+component:\s*(?P<component>\S+)\s*$")
_STATE = re.compile(r"^(?P<indent>\s+)state:\s*(?P<state>\S+)(?P<rest>\s*(#.*)?)$")


class ToggleError(OnecommitError, ValueError):
    """A wrong toggle file or request; the message names the file, the entry and the fix."""


@dataclass(frozen=True)
class AddOn:
    component: str
    state: str


def toggle_file(root: Path, env: str) -> Path:
    return root / "gitops" / "envs" / env / "optional.yaml"


def load(path: Path) -> list[AddOn]:
    """The add-ons of a toggle file, validated."""
    if not path.is_file():
        raise ToggleError(f"{path} does not exist: the env has no optional layer")
    return _addons(path, path.read_text())


def _addons(path: Path, text: str) -> list[AddOn]:
    """The add-ons `text` (the content of `path`, or its rewrite) lists, validated."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ToggleError(f"{path} is not YAML: {error}") from None
    if not isinstance(data, list):
        raise ToggleError(f"{path}: expected a list of {{component, state}} entries")
    addons: list[AddOn] = []
    for number, entry in enumerate(data, 1):
        if not (isinstance(entry, dict) and isinstance(entry.get("component"), str)):
            raise ToggleError(f"{path}: entry {number} has no component name")
        if entry.get("state") not in STATES:
            raise ToggleError(f"{path}: {entry['component']}: state {entry.get('state')!r} "
                              f"is not one of {', '.join(STATES)}")
        if any(a.component == entry["component"] for a in addons):
            raise ToggleError(f"{path}: {entry['component']} is listed twice")
        addons.append(AddOn(entry["component"], entry["state"]))
    return addons


def _rewrite(text: str, wanted: dict[str, str]) -> str:
    lines, component = text.splitlines(keepends=True), None
    for index, line in enumerate(lines):
        entry = _ENTRY.match(line.rstrip("\n"))
        if entry:
            component = entry["component"]
            continue
        state = _STATE.match(line.rstrip("\n"))
        if state and component in wanted:
            lines[index] = f"{state['indent']}state: {wanted[component]}{state['rest']}\n"
    return "".join(lines)


def set_state(root: Path, env: str, state: str,
              components: Iterable[str] | None = None) -> list[str]:
    """Set `state` for the named add-ons (all when None) of `env`; returns those that changed,
    in file order (empty: nothing to commit)."""
    if state not in STATES:
        raise ToggleError(f"state {state!r} is not one of {', '.join(STATES)}")
    path = toggle_file(root, env)
    addons = load(path)
    names = [a.component for a in addons]
    chosen = names if components is None else list(components)
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        raise ToggleError(f"{path}: no add-on {', '.join(unknown)} (known: {', '.join(names)})")
    changed = [a.component for a in addons if a.component in chosen and a.state != state]
    if not changed:
        return []
    text = _rewrite(path.read_text(), dict.fromkeys(changed, state))
    result = {a.component: a.state for a in _addons(path, text)}
    if any(result[c] != state for c in changed):
        raise ToggleError(f"{path}: a state line is not `  state: <value>` under its "
                          "`- component:` line; fix the file's layout")
    write_file(path, text)
    return changed
