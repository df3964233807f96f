"""docker/<name>.Dockerfile: built from requirements/<name>.txt, pinned, non-root.

The image and the local profile must install the same pinned environment (DESIGN §2), so each
component's Dockerfile copies its requirements file and installs with `-r` from that copy, and
installs no package by name besides; an image with no requirements file (PostgreSQL,
Prometheus: Debian's packages) installs no Python package at all. Every base image is pinned
(exact tag or digest; a `FROM ${ARG}` is judged by the ARG's default); the final stage runs as a
user other than root, but for the parent image every other starts from, whose children install
as root.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from onecommit.lint import Finding

_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_EXACT_TAG = re.compile(r":[\w.-]*\d[\w.-]*$")  # a version, not a moving name like "slim"
_ROOT_USERS = {"root", "0"}
_INSTALLERS = (("pip", "install"), ("pip3", "install"), ("uv", "pip", "install"))
PARENT_IMAGES = {"base"}  # docker/base.Dockerfile: every image's BASE_IMAGE
_ARG_REFERENCE = re.compile(r"^\$\{?(\w+)\}?$")


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str


def instructions(text: str) -> Iterator[Instruction]:
    """Dockerfile instructions with continuation lines joined; comments dropped."""
    start, parts = 0, list[str]()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not parts and (not line or line.startswith("#")):
            continue
        if parts and line.startswith("#"):
            continue  # comments inside a continued instruction
        start = start if parts else number
        parts.append(line.removesuffix("\\").strip())
        if not line.endswith("\\"):
            keyword, _, args = " ".join(parts).partition(" ")
            yield Instruction(start, keyword.upper(), args.strip())
            parts = []


def _copy_sources(args: str) -> tuple[list[str], str]:
    words = [w for w in shlex.split(args) if not w.startswith("--")]
    return words[:-1], words[-1] if words else ""


def _install_args(command: str) -> Iterator[list[str]]:
    """Arguments after `pip install` (or `uv pip install`) in each `&&`-separated command."""
    for part in re.split(r"&&|;|\|\|", command):
        if "install" not in part:
            continue
        try:
            words = shlex.split(part)
        except ValueError:  # a quote spans a separator: not an install command of ours
            words = part.split()
        # A virtual environment's installer counts too: /opt/venv/bin/pip install ...
        commands = [PurePosixPath(word).name for word in words]
        for installer in _INSTALLERS:
            for i in range(len(words) - len(installer) + 1):
                if tuple(commands[i:i + len(installer)]) == installer:
                    yield words[i + len(installer):]


def _packages_by_name(args: list[str]) -> list[str]:
    """Install arguments that are package names: neither options, their values, nor paths."""
    names, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("-r", "--requirement", "-c", "--constraint", "-e", "--editable",
                     "--index-url", "-i", "--extra-index-url", "--target", "-t", "--prefix",
                     "--python", "-p"):
            skip = True
        elif not arg.startswith("-") and not arg.startswith((".", "/")):
            names.append(arg)
    return names


def _base_image(args: str, defaults: dict[str, str]) -> str:
    """The image a FROM names, an ARG reference replaced by that ARG's default."""
    image = args.split()[0] if args else ""
    reference = _ARG_REFERENCE.match(image)
    return defaults.get(reference.group(1), image) if reference else image


def check_dockerfile(root: Path, path: Path) -> list[Finding]:
    rel = str(path.relative_to(root))
    component = path.name.removesuffix(".Dockerfile")
    requirements = f"requirements/{component}.txt"
    has_requirements = (root / requirements).is_file()
    obj = f"image {component}"
    findings = []
    copied: set[str] = set()
    installs_from_requirements = False
    user = None
    defaults: dict[str, str] = {}
    for step in instructions(path.read_text()):
        if step.keyword == "ARG":
            name, _, default = step.args.partition("=")
            defaults[name.strip()] = default.strip()
        elif step.keyword == "FROM":
            image = _base_image(step.args, defaults)
            if not (_DIGEST.search(image) or _EXACT_TAG.search(image)) or image.endswith(":latest"):
                findings.append(Finding(rel, f"{obj} line {step.line}", f"base image {image!r} "
                                        "is not pinned: use an exact version tag or @sha256"))
            user = None  # a new stage starts as root again
        elif step.keyword == "COPY":
            sources, dest = _copy_sources(step.args)
            if requirements in sources:
                into_dir = dest.endswith("/")
                copied.add(str(PurePosixPath(dest) / f"{component}.txt") if into_dir else dest)
        elif step.keyword == "USER":
            user = step.args.split(":")[0].strip()
        elif step.keyword == "RUN":
            for args in _install_args(step.args):
                if not has_requirements:
                    findings.append(Finding(rel, f"{obj} line {step.line}", "installs Python "
                                            f"packages but {requirements} does not exist: add "
                                            "it, or install Debian's packages only"))
                    continue
                files = {args[i + 1] for i, a in enumerate(args[:-1])
                         if a in ("-r", "--requirement")}
                installs_from_requirements |= bool(files & copied)
                for name in _packages_by_name(args):
                    findings.append(Finding(rel, f"{obj} line {step.line}",
                                            f"installs {name!r} outside {requirements}: add it "
                                            "there so the local profile gets it too"))
    if has_requirements and not installs_from_requirements:
        findings.append(Finding(rel, obj, f"does not install from {requirements}: COPY it and "
                                          "RUN pip install -r <the copy>"))
    if component not in PARENT_IMAGES and (user is None or user in _ROOT_USERS):
        findings.append(Finding(rel, obj, "final stage runs as root: add USER <uid>:<gid> of a "
                                          "non-root user"))
    return findings


def check_requirements_pinned(root: Path, component: str) -> list[Finding]:
    path = root / "requirements" / f"{component}.txt"
    findings = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        spec = line.split("#")[0].strip()
        if spec and not spec.startswith("-") and "==" not in spec and " @ " not in spec:
            findings.append(Finding(f"requirements/{component}.txt", f"line {number}",
                                    f"{spec!r} is not pinned (==): recompile it with uv pip "
                                    "compile"))
    return findings


def check_dockerfiles(root: Path) -> list[Finding]:
    findings: list[Finding] = []
    for path in sorted((root / "docker").glob("*.Dockerfile")):
        findings += check_dockerfile(root, path)
    # Every requirements file an image may install (platform-cluster.txt beside platform.txt).
    for requirements in sorted((root / "requirements").glob("*.txt")):
        findings += check_requirements_pinned(root, requirements.stem)
    return findings
