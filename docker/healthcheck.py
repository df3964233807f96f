#!/usr/bin/env python
"""A container's health check, observed: `onecommit-healthcheck URL [KEY=VALUE ...]` exits 0
only when URL answers 2xx and, for each KEY=VALUE, the JSON answer's dotted KEY equals VALUE
(e.g. Airflow's `scheduler.status=healthy`). Standard library only: it runs in every image."""

import json
import sys
import urllib.request


def main(url: str, *expected: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (our own URL)
            body = response.read()
    except OSError as error:
        print(f"{url}: {error}")
        return 1
    for pair in expected:
        key, _, value = pair.partition("=")
        found = json.loads(body)
        for part in key.split("."):
            found = found.get(part) if isinstance(found, dict) else None
        if str(found) != value:
            print(f"{url}: {key} is {found!r}, not {value!r}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
