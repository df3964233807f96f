"""One virtual environment per component, built by uv from its pinned requirements file."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

from onecommit.commands import CommandError, last_lines, run
from onecommit.errors import OnecommitError
from onecommit.settings import PROJECT_ROOT, Settings

REQUIREMENTS_DIR = PROJECT_ROOT / "requirements"
COMPONENTS = ("platform", "mlflow", "triton", "gateway")
# Optional layers: built only when asked (`invoke envs --name feast`) or when the layer is
# attached (`invoke optional --on`), so the core platform never pays for them.
OPTIONAL_COMPONENTS = ("feast",)
_STAMP = ".requirements.sha256"
# The platform environment is installed with its bytecode compiled: the training sandbox mounts
# it read-only, so a sandbox could not cache what it compiles, and would compile scikit-learn
# and the ONNX converters again on every training (4x slower).
_INSTALL_OPTIONS = {"platform": ["--compile-bytecode"]}


class EnvironmentError_(OnecommitError):
    """An environment could not be built; the message names the component and the fix."""


def requirements_file(name: str) -> Path:
    path = REQUIREMENTS_DIR / f"{name}.txt"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in REQUIREMENTS_DIR.glob("*.txt")))
        raise EnvironmentError_(f"no requirements file for component {name!r}; known: {known}")
    return path


def _uv() -> str:
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if not Path(uv).exists():
        raise EnvironmentError_("uv is not installed: run `make test` or `pip install uv`")
    return uv


def _digest(name: str) -> str:
    """What the environment is built from: its requirements file and its install options."""
    options = " ".join(_INSTALL_OPTIONS.get(name, [])).encode()
    return hashlib.sha256(requirements_file(name).read_bytes() + options).hexdigest()


def environment_digest(settings: Settings, name: str) -> str:
    """What `name`'s environment was built from (its requirements file's digest); empty
    while it is not built."""
    stamp = settings.env_dir(name) / _STAMP
    return stamp.read_text() if stamp.is_file() else ""


def is_current(settings: Settings, name: str) -> bool:
    """Whether `name`'s environment matches its requirements file (no build needed)."""
    return environment_digest(settings, name) == _digest(name)


def ensure_env(settings: Settings, name: str) -> Path:
    """Build `name`'s environment unless it already matches its requirements file; return it."""
    requirements = requirements_file(name)
    digest = _digest(name)
    target = settings.env_dir(name)
    stamp = target / _STAMP
    if is_current(settings, name):
        return target
    uv = _uv()
    # The stamp is written last: an interrupted build has none and is rebuilt from scratch.
    stamp.unlink(missing_ok=True)
    for command in (
        [uv, "venv", "--quiet", "--clear", "--python", sys.executable, str(target)],
        [uv, "pip", "install", "--quiet", "--python", str(target / "bin" / "python"),
         *_INSTALL_OPTIONS.get(name, []), "-r", str(requirements)],
    ):
        try:
            run(command)
        except CommandError as error:
            raise EnvironmentError_(
                f"building the {name} environment failed: {last_lines(error.output, 5)}; "
                f"check network access to PyPI and {requirements.name}"
            ) from None
    stamp.write_text(digest)
    return target
