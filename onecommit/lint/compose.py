"""compose/compose.yaml: every service built from docker/, health-checked, restarted, reachable
on the loopback only.

Each service's image is one of ours (`onecommit/<name>:...` with docker/<name>.Dockerfile: no
registry image sneaks in), has a health check that runs a command and a restart policy, and
either shares the host's loopback (network_mode: host; its servers bind 127.0.0.1) or publishes
its ports on 127.0.0.1 only. The trainer, which runs every commit's training, is locked down:
no network, no state dir, no platform settings, a read-only root, user nobody, no capabilities.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from onecommit.lint import Finding

COMPOSE_FILE = Path("compose") / "compose.yaml"
_OURS = re.compile(r"^onecommit/([a-z0-9-]+):")


def _problems(root: Path, service: dict[str, Any]) -> list[str]:
    problems = []
    image = _OURS.match(str(service.get("image", "")))
    if image is None or not (root / "docker" / f"{image.group(1)}.Dockerfile").is_file():
        problems.append(f"image {service.get('image')!r} is not built from docker/: use "
                        "onecommit/<name>:${ONECOMMIT_IMAGE_TAG} with docker/<name>.Dockerfile")
    test = (service.get("healthcheck") or {}).get("test")
    if not test or test == ["NONE"]:
        problems.append("has no health check: add healthcheck.test that observes it serving")
    if service.get("restart") in (None, "no"):
        problems.append("has no restart policy: add restart: unless-stopped")
    for port in service.get("ports") or []:
        if not str(port).startswith("127.0.0.1:"):
            problems.append(f"publishes {port!r} beyond the loopback: write 127.0.0.1:{port}")
    if service.get("network_mode") not in ("host", "none") and not service.get("ports"):
        problems.append("is reachable from neither the host nor the other services: use "
                        "network_mode: host (as every service here) or publish on 127.0.0.1")
    return problems


# What the trainer must hold (key → value), and why when it does not.
_TRAINER_LOCKS = {"network_mode": ("none", "training must reach no service: network_mode: none"),
                  "read_only": (True, "a commit's code must not change the image: read_only"),
                  "user": ("65534:65534", "training runs as nobody: user: \"65534:65534\""),
                  "cap_drop": (["ALL"], "training needs no capability: cap_drop: [ALL]")}


def _trainer_problems(service: dict[str, Any]) -> list[str]:
    problems = [why for key, (value, why) in _TRAINER_LOCKS.items()
                if service.get(key) != value]
    if any("STATE_DIR" in str(volume) for volume in service.get("volumes") or []):
        problems.append("mounts the state dir: training must see the training spool only")
    if "env_file" in service:
        problems.append("reads the platform's settings (env_file): give it PYTHONPATH and HOME "
                        "only")
    return problems


def check_compose(root: Path) -> list[Finding]:
    path = root / COMPOSE_FILE
    if not path.is_file():
        return []
    services: dict[str, dict[str, Any]] = yaml.safe_load(path.read_text())["services"]
    if "trainer" not in services:
        return [Finding(str(COMPOSE_FILE), "services", "no trainer service: a commit's training "
                        "needs its locked-down container")]
    return [Finding(str(COMPOSE_FILE), f"service {name}", problem)
            for name, service in services.items()
            for problem in _problems(root, service)
            + (_trainer_problems(service) if name == "trainer" else [])]
